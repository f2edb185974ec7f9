// The record store: concurrent appends from two processes, a corrupt line skipped with a warning
// naming FILE:LINE, records of another target never used as this one's.
import { spawn } from 'node:child_process';
import { appendFileSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { RecordStore, bestByWorkload, defaultDbPath } from '../src/tune/records.js';
import { exactHit, nearestPriors } from '../src/tune/strategies/reuse.js';
import { Space } from '../src/tune/space.js';
import { repoRoot } from './helpers/cli.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'adopt-records-'));
const base = { kernel: 'k', template: 't1', workload: { rows: 64, n: 32, dtype: 'float32' }, target: 'here', status: 'ok' as const, source: 'measure' as const };

function writer(path: string, tag: string, n: number): Promise<number> {
  // a separate node process appending through the same module the tuner uses (the built one)
  const code = `import { RecordStore } from ${JSON.stringify(`${repoRoot}/dist/tune/records.js`)};
const s = new RecordStore(${JSON.stringify(path)});
for (let i = 0; i < ${n}; i++) s.append({ kernel: 'k', template: 't1', workload: { rows: i, n: 32, dtype: 'float32' }, target: 'here',
  schedule: { writer: '${tag}', i, pad: 'x'.repeat(200) }, status: 'ok', median_s: 0.001 * (i + 1), source: 'measure' });`;
  return new Promise((resolve) => {
    const c = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: 'inherit' });
    c.on('close', (status) => resolve(status ?? -1));
  });
}

function clearer(path: string, rounds: number): Promise<number> {
  // a separate process running `records clear --kernel other` over and over: it rewrites the store
  // each time, selecting none of the writers' records
  const code = `import { clearRecords } from ${JSON.stringify(`${repoRoot}/dist/tune/clear.js`)};
for (let i = 0; i < ${rounds}; i++) clearRecords(${JSON.stringify(path)}, { kernel: 'other' });`;
  return new Promise((resolve) => {
    const c = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: 'inherit' });
    c.on('close', (status) => resolve(status ?? -1));
  });
}

describe('record store', () => {
  it('keeps every record appended while another process clears the store (the clear\'s read and rename hold the store\'s lock)', async () => {
    const path = join(tmp(), 'db', 'records.jsonl');
    new RecordStore(path).append({ ...base, schedule: { b: 0 }, median_s: 0.001 });
    const codes = await Promise.all([writer(path, 'a', 150), writer(path, 'b', 150), clearer(path, 150)]);
    expect(codes).toEqual([0, 0, 0]);
    const { records } = new RecordStore(path).readAll();
    expect(records.length).toBe(301);
    expect(readdirSync(dirname(path))).toEqual(['records.jsonl']);
  }, 120_000);

  it('takes appends from two processes at once without losing or tearing a line', async () => {
    const path = join(tmp(), 'db', 'records.jsonl');
    const [a, b] = await Promise.all([writer(path, 'a', 300), writer(path, 'b', 300)]);
    expect([a, b]).toEqual([0, 0]);
    const warnings: string[] = [];
    const { records } = new RecordStore(path, (m) => warnings.push(m)).readAll();
    expect(warnings).toEqual([]);
    expect(records.length).toBe(600);
    expect(records.filter((r) => r.schedule.writer === 'a').length).toBe(300);
    expect(readFileSync(path, 'utf8').split('\n').filter(Boolean).every((l) => JSON.parse(l).kind === 'tune')).toBe(true);
  }, 60_000);

  it('skips a corrupt line with a warning naming the file and line, and keeps the rest', () => {
    const path = join(tmp(), 'r.jsonl');
    const s = new RecordStore(path, () => undefined);
    s.append({ ...base, schedule: { b: 1 }, median_s: 0.002 });
    appendFileSync(path, '{"kind":"tune","kernel":"k", truncated\n');
    appendFileSync(path, `${JSON.stringify({ kind: 'tune', kernel: 'k' })}\n`); // parses, but not a record
    appendFileSync(path, `${JSON.stringify({ kind: 'rule-speed', file: 'x' })}\n`); // another tool's line: silently not ours
    s.append({ ...base, schedule: { b: 2 }, median_s: 0.001 });
    const warnings: string[] = [];
    const { records } = new RecordStore(path, (m) => warnings.push(m)).readAll();
    expect(records.map((r) => r.schedule.b)).toEqual([1, 2]);
    expect(warnings).toEqual([`${path}:2: corrupt record (not JSON); skipped`, `${path}:3: corrupt record (missing or mistyped fields); skipped`]);
  });

  it('never uses a record of another target (nor of another template) as this one\'s', () => {
    const path = join(tmp(), 'r.jsonl');
    const s = new RecordStore(path, () => undefined);
    s.append({ ...base, target: 'elsewhere', schedule: { b: 4 }, median_s: 0.0001 });
    s.append({ ...base, template: 'old', schedule: { b: 4 }, median_s: 0.0001 });
    s.append({ ...base, schedule: { b: 2 }, median_s: 0.003 });
    s.append({ ...base, schedule: { b: 2 }, median_s: 0.003, source: 'retime' });
    const mine = s.forTarget('here', 'k', 't1');
    expect(mine.map((r) => r.schedule.b)).toEqual([2, 2]);
    expect(exactHit(mine, base.workload)?.schedule).toEqual({ b: 2 });
    expect(s.forTarget('nowhere', 'k')).toEqual([]);
  });

  it('never chooses a schedule that failed, and prefers interleaved re-timings', () => {
    const path = join(tmp(), 'r.jsonl');
    const s = new RecordStore(path, () => undefined);
    s.append({ ...base, schedule: { b: 1 }, median_s: 0.001 });
    s.append({ ...base, schedule: { b: 1 }, status: 'timeout', median_s: null });
    s.append({ ...base, schedule: { b: 2 }, median_s: 0.004 });
    s.append({ ...base, schedule: { b: 3 }, median_s: 0.002 });
    s.append({ ...base, schedule: { b: 3 }, median_s: 0.0025, source: 'retime' });
    s.append({ ...base, schedule: { b: 2 }, median_s: 0.003, source: 'retime' });
    const best = [...bestByWorkload(s.forTarget('here')).values()][0];
    expect(best.schedule).toEqual({ b: 3 });
    const space = new Space({ b: [1, 2, 3] }, { b: 1 });
    expect(nearestPriors(s.forTarget('here'), space, { rows: 128, n: 32, dtype: 'float32' }, 3)).toEqual([{ b: 3 }, { b: 2 }]);
  });

  it('lives under the user cache directory unless $ADOPT_DB says otherwise', () => {
    const old = { db: process.env.ADOPT_DB, xdg: process.env.XDG_CACHE_HOME };
    try {
      delete process.env.ADOPT_DB;
      process.env.XDG_CACHE_HOME = '/x/cache';
      expect(defaultDbPath()).toBe('/x/cache/adopt/records.jsonl');
      process.env.ADOPT_DB = '/y/db.jsonl';
      expect(defaultDbPath()).toBe('/y/db.jsonl');
    } finally {
      if (old.db === undefined) delete process.env.ADOPT_DB; else process.env.ADOPT_DB = old.db;
      if (old.xdg === undefined) delete process.env.XDG_CACHE_HOME; else process.env.XDG_CACHE_HOME = old.xdg;
    }
    writeFileSync(join(tmp(), 'unused'), '');
  });
});
