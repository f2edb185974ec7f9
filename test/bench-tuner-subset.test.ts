// `npm run bench:tuner -- --kernels K`: a run on a subset of the kernels trains its cost models on
// less data, and must leave the models of the whole set (which the tuner loads) as they are.
import { cpSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from './helpers/cli.js';
import { tempProject } from './helpers/ir.js';

const snapshot = (dir: string) => Object.fromEntries(readdirSync(dir).sort().map((f) => [f, readFileSync(join(dir, f), 'utf8')]));

function bench(replay: string, cache: string, kernels: string) {
  const r = spawnSync(process.execPath, [join(repoRoot, 'dist', 'bench', 'tuner.js'), '--replay', replay, '--kernels', kernels, '--seeds', '1', '--ablation-seeds', '1'],
    { cwd: repoRoot, encoding: 'utf8', env: { ...process.env, ADOPT_CACHE: cache } });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

describe('bench:tuner on a subset of the kernels', () => {
  it('writes its models to the cache and leaves the whole set\'s models untouched', () => {
    const dir = tempProject({});
    const replay = join(dir, 'replay');
    const cache = join(dir, 'cache');
    cpSync(join(repoRoot, 'fixtures', 'tuning', 'replay'), replay, { recursive: true });
    // the whole set's models, as the shipped replay data has them
    mkdirSync(join(replay, 'model'));
    cpSync(join(repoRoot, 'fixtures', 'tuning', 'model'), join(replay, 'model'), { recursive: true });
    const before = snapshot(join(replay, 'model'));
    const kernel = readdirSync(replay).find((f) => f.endsWith('.json'))!.split('.')[0];

    const first = bench(replay, cache, kernel);
    expect(first.code, first.err).toBe(0);
    expect(first.out).toMatch(/pre-training: 0\/\d+ models loaded from /);
    expect(snapshot(join(replay, 'model'))).toEqual(before);
    const written = first.out.match(/models loaded from (\S+),/)![1];
    expect(written.startsWith(cache)).toBe(true);
    expect(readdirSync(written).sort()).toEqual(Object.keys(before).sort());

    // a second run of the same subset reuses the models it trained
    const again = bench(replay, cache, kernel);
    expect(again.code, again.err).toBe(0);
    expect(again.out).toMatch(/pre-training: (\d+)\/\1 models loaded from /);
    expect(again.out).toContain(`loaded from ${written},`);
  }, 120_000);

  it('refuses a kernel it has no replay data for, naming the ones it has', () => {
    const r = bench(join(repoRoot, 'fixtures', 'tuning', 'replay'), join(tempProject({}), 'cache'), 'rms_norm,no_such_kernel');
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--kernels: no replay data for no_such_kernel in .*\(there is: .*rms_norm/);
  });
});
