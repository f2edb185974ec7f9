// bench:real's verdict cache written by two runs at once: every line whole, nothing lost.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { VerdictCache } from '../src/bench/real-verdict-cache.js';
import { repoRoot } from './helpers/cli.js';

function writer(path: string, tag: string, n: number): Promise<number> {
  // a separate node process putting verdicts through the module bench:real uses (the built one);
  // each line is made longer than a pipe buffer, the size below which any append is atomic anyway
  const code = `import { VerdictCache } from ${JSON.stringify(`${repoRoot}/dist/bench/real-verdict-cache.js`)};
const c = new VerdictCache(${JSON.stringify(path)});
for (let i = 0; i < ${n}; i++) c.put('${tag}-' + i, { file: '${tag}', status: 'verified', rules: ['rmsnorm'], classes: { verified: 1, mismatch: 0, not_runnable: 0 },
  fast_path_calls: i, compiled_calls: 0, problems: ['x'.repeat(6000)] });`;
  return new Promise((resolve) => {
    const c = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: 'inherit' });
    c.on('close', (status) => resolve(status ?? -1));
  });
}

describe('verdict cache', () => {
  it('takes verdicts from two processes at once without losing or tearing a line', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'adopt-verdicts-')), 'cache', 'verdicts.jsonl');
    expect(await Promise.all([writer(path, 'a', 200), writer(path, 'b', 200)])).toEqual([0, 0]);
    const cache = new VerdictCache(path);
    expect(cache.skippedLines).toEqual([]);
    expect(cache.size).toBe(400);
    for (const k of ['a-0', 'a-199', 'b-0', 'b-199']) expect(cache.get(k)?.file).toBe(k[0]);
    expect(readFileSync(path, 'utf8').split('\n').filter(Boolean)).toHaveLength(400);
  }, 60_000);
});
