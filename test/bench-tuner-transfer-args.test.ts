// bench:tuner --transfer refuses what it cannot run, with a message and exit status 2, before any
// model is loaded or trained.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(__dirname, '..');
const xeon = join(root, 'fixtures', 'tuning', 'replay-xeon');
const tuner = (args: string[]) => spawnSync(process.execPath, [join(root, 'dist', 'bench', 'tuner.js'), ...args], { encoding: 'utf8', timeout: 60_000 });

describe('bench:tuner --transfer arguments', () => {
  it('a directory with no replay data', () => {
    const r = tuner(['--transfer', mkdtempSync(join(tmpdir(), 'adopt-transfer-'))]);
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/--transfer: no replay data in .*measure the new target with/);
  });

  it('a --kernels name the new target has no data for', () => {
    const dir = mkdtempSync(join(tmpdir(), 'adopt-transfer-'));
    const rope = readdirSync(xeon).find((n) => n.startsWith('rope.'))!;
    copyFileSync(join(xeon, rope), join(dir, rope));
    const r = tuner(['--transfer', dir, '--kernels', 'rope,softmax']);
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/--kernels: no replay data for softmax in /);
  });
});
