// Processes merging into one schedule file at once (a batch of tunes over models in one
// directory): every process's entries end up in the file. A writer that finds the file's lock
// held waits for it; one that finds the lock of a process that died takes it over, saying so.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from './helpers/cli.js';
import { tempProject } from './helpers/ir.js';
import { registry, TARGET } from './helpers/synth-kernel.js';

const FILE = 'adopt-schedules.json';
const entry = (rows: number) => ({ kernel: 'synth', workload: { rows, dtype: 'float32' }, schedule: { block: 1 + (rows % 16), unroll: 1 } });

type Run = { code: number; stderr: string };

/** A separate node process merging `rows`' entries the way `adopt tune --schedules` does, through
 *  the built module. */
function writer(dir: string, rows: number[], setup = ''): { done: Promise<Run>; exited: () => boolean } {
  const path = join(dir, FILE);
  const code = `import { mergeScheduleFile } from ${JSON.stringify(`${repoRoot}/dist/tune/schedule-file.js`)};
${setup}
const path = ${JSON.stringify(path)};
for (const rows of ${JSON.stringify(rows)}) {
  const e = [${JSON.stringify(entry(0))}].map((x) => ({ ...x, workload: { ...x.workload, rows }, schedule: { ...x.schedule, block: 1 + (rows % 16) } }));
  mergeScheduleFile(path, ${JSON.stringify(TARGET)}, e, { warn: () => {} });
}`;
  let exited = false;
  const done = new Promise<Run>((resolve) => {
    const c = spawn(process.execPath, ['--input-type=module', '-e', code], { env: { ...process.env, ADOPT_REGISTRY_JSON: join(dir, 'registry.json') } });
    let stderr = '';
    c.stderr.on('data', (d) => { stderr += d; });
    c.on('close', (status) => { exited = true; resolve({ code: status ?? -1, stderr }); });
  });
  return { done, exited: () => exited };
}

const setUp = () => tempProject({ 'registry.json': JSON.stringify(registry) });
const rowsIn = (dir: string) => (JSON.parse(readFileSync(join(dir, FILE), 'utf8')).entries as { workload: { rows: number } }[]).map((e) => e.workload.rows).sort((a, b) => a - b);

describe('the schedule file, written by several processes at once', () => {
  it('keeps every process\'s entries', async () => {
    const dir = setUp();
    const writers = 12;
    const each = 5;
    for (let round = 0; round < 2; round++) {
      rmSync(join(dir, FILE), { force: true });
      const runs = await Promise.all(Array.from({ length: writers }, (_, w) => writer(dir, Array.from({ length: each }, (_, i) => w * each + i)).done));
      for (const r of runs) expect(r, r.stderr).toEqual({ code: 0, stderr: '' });
      expect(rowsIn(dir)).toEqual(Array.from({ length: writers * each }, (_, i) => i));
      expect(readdirSync(dir).sort()).toEqual([FILE, 'registry.json']);
    }
  }, 120_000);

  it('waits while another process holds the lock, then merges into what that process wrote', async () => {
    const dir = setUp();
    const path = join(dir, FILE);
    const lock = `${path}.lock`;
    // this process holds the lock, as a merging process does between its read and its write
    writeFileSync(lock, JSON.stringify({ pid: process.pid, host: hostname(), at: new Date().toISOString(), token: 'test' }));
    const w = writer(dir, [2]);
    await new Promise((r) => setTimeout(r, 1500));
    expect(w.exited()).toBe(false);
    expect(existsSync(path)).toBe(false);
    writeFileSync(path, `${JSON.stringify({ format: 'adopt-schedules/1', target: TARGET, entries: [entry(1)] })}\n`);
    rmSync(lock);
    expect(await w.done).toEqual({ code: 0, stderr: '' });
    expect(rowsIn(dir)).toEqual([1, 2]);
    expect(existsSync(lock)).toBe(false);
  }, 60_000);

  it('takes over the lock of a process that died holding it, with a message', async () => {
    const dir = setUp();
    const path = join(dir, FILE);
    // a process that takes the lock and dies before it releases it
    const dead = writer(dir, [], `import { acquire } from ${JSON.stringify(`${repoRoot}/dist/file-lock.js`)};
acquire(${JSON.stringify(path)}); process.exit(0);`);
    expect(await dead.done).toEqual({ code: 0, stderr: '' });
    expect(existsSync(`${path}.lock`)).toBe(true);
    const w = writer(dir, [3]);
    const r = await w.done;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(new RegExp(`^adopt: removed the stale lock ${path}\\.lock: its owner, process \\d+, is no longer running\\n$`));
    expect(rowsIn(dir)).toEqual([3]);
    expect(existsSync(`${path}.lock`)).toBe(false);
  }, 60_000);
});
