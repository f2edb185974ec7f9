// What the tuner believes: a run stopped before its finalists were re-timed is resumed, never taken
// as an exact record; a record whose schedule its space does not allow, or whose time is not a
// positive number, is skipped with FILE:LINE; a workload where everything failed is said to be one;
// a hand-given --shape and a schedule file that is not one are refused before any work.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { measuredText, wholeNumber } from '../../src/cli/tune.js';
import { AdoptError } from '../../src/diag.js';
import { ReplayMeasurer, fromReplayFile } from '../../src/tune/replay.js';
import { RecordStore, checkWritable } from '../../src/tune/records.js';
import { type KernelInfo, Space } from '../../src/tune/space.js';
import { kernelRegistry } from '../../src/match/kernel-registry.js';
import { exactHit, nearestPriors } from '../../src/tune/strategies/reuse.js';
import { scheduleFileText } from '../../src/tune/schedule-file.js';
import { tuneWorkload } from '../../src/tune/tuner.js';
import { parseShape } from '../../src/tune/workload.js';
import { PARAMS, registry, TARGET, workload } from '../helpers/synth-kernel.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'adopt-trust-'));
const info = { target: TARGET, templates: { synth: { float32: 'tpl' } } };
const time = (s: Record<string, unknown>) => 1e-3 * (1 + Math.abs(Math.log2(s.block as number) - 3) + 0.1 * (s.unroll as number));
const replay = (status: 'ok' | 'crash' = 'ok') => fromReplayFile({
  format: 'adopt-replay/1', kernel: 'synth', target: TARGET, template_hash: 'tpl', space: registry.kernels.synth.space,
  workloads: [{ workload, results: new Space(PARAMS, { block: 1, unroll: 1 }).enumerate().map((s) => ({ schedule: s, status, median_s: status === 'ok' ? time(s) : null })) }],
});
const rec = { kernel: 'synth', template: 'tpl', workload, target: 'here' } as const;
const opts = (db: string, budget: number) => ({ kernel: 'synth', workload, budget, strategy: 'random' as const, db, registry, targetInfo: info, model: null });

describe('a stopped run', () => {
  it('is resumed, not taken as an exact record: its measurements count, the rest of the budget is spent, then the finalists are re-timed', async () => {
    const db = join(tmp(), 'r.jsonl');
    const store = new RecordStore(db, () => {});
    // three batch medians, the best of them never compared with the default
    store.append({ ...rec, schedule: { block: 16, unroll: 4 }, status: 'ok', median_s: 1e-4, source: 'measure' });
    store.append({ ...rec, schedule: { block: 2, unroll: 1 }, status: 'ok', median_s: 3e-3, source: 'measure' });
    store.append({ ...rec, schedule: { block: 4, unroll: 2 }, status: 'crash', median_s: null, error: 'boom', source: 'measure' });
    expect(exactHit(store.readAll().records, workload)).toBeNull();
    const measurer = new ReplayMeasurer([replay()]);
    const s = await tuneWorkload({ ...opts(db, 6), measurer });
    expect(s.source).toBe('measured');
    expect(s.resumed).toBe(3);
    expect(s.measurements).toBe(3); // 6 allowed, 3 taken by the stopped run
    expect(s.retimed).toBeGreaterThan(0);
    expect(s.failures).toBeGreaterThanOrEqual(1);
    expect(s.notes.join(' ')).toMatch(/resumed a stopped run of this workload: 3 schedule\(s\)/);
    const after = new RecordStore(db, () => {}).readAll().records;
    expect(after.filter((r) => r.source === 'measure').length).toBe(6);
    expect(after.some((r) => r.source === 'retime')).toBe(true);
    // once finished, it is an exact record
    const again = await tuneWorkload({ ...opts(db, 6), measurer: new ReplayMeasurer([replay()]) });
    expect(again.source).toBe('exact-record');
    expect(again.measurements).toBe(0);
    expect(again.notes.join(' ')).toMatch(/6 schedule\(s\) measured earlier/);
  });

  it('with budget 0 is not an exact record either, and says a budget resumes it', async () => {
    const db = join(tmp(), 'r.jsonl');
    new RecordStore(db, () => {}).append({ ...rec, schedule: { block: 16, unroll: 4 }, status: 'ok', median_s: 1e-4, source: 'measure' });
    const s = await tuneWorkload(opts(db, 0));
    expect(s.source).toBe('default');
    expect(s.notes.join(' ')).toMatch(/a stopped run of this workload left 1 measurement\(s\); a budget above 0 resumes it/);
  });
});

describe('records that cannot be believed', () => {
  it('an illegal schedule or a time that is not positive is skipped with FILE:LINE, never chosen nor written', async () => {
    const db = join(tmp(), 'r.jsonl');
    const lines = [
      { ...rec, schedule: { block: 999, unroll: 1 }, status: 'ok', median_s: 1e-9, source: 'retime' },
      { ...rec, schedule: { block: 2, unroll: 1, bogus: 1 }, status: 'ok', median_s: 1e-9, source: 'retime' },
      { ...rec, schedule: { block: 4, unroll: 1 }, status: 'ok', median_s: -1, source: 'retime' },
      { ...rec, schedule: { block: 4, unroll: 2 }, status: 'ok', median_s: 0, source: 'retime' },
      { ...rec, schedule: { block: 8, unroll: 1 }, status: 'ok', median_s: 2e-3, source: 'retime' },
    ].map((r) => JSON.stringify({ kind: 'tune', v: 1, at: '', ...r }));
    writeFileSync(db, `${lines.join('\n')}\n${lines[2].replace('-1', '1e999')}\n`);
    const warn: string[] = [];
    const s = await tuneWorkload({ ...opts(db, 0), warn: (m) => warn.push(m) });
    expect(s.source).toBe('exact-record');
    expect(s.schedule).toEqual({ block: 8, unroll: 1 });
    expect(warn).toEqual([
      `${db}:3: corrupt record (time -1 s is not a positive number); skipped`,
      `${db}:4: corrupt record (time 0 s is not a positive number); skipped`,
      `${db}:6: corrupt record (time Infinity s is not a positive number); skipped`,
      `${db}:1: record of synth with schedule {"block":999,"unroll":1}, which is not legal in its space at {"rows":512,"dtype":"float32"}; skipped`,
      `${db}:2: record of synth with schedule {"block":2,"unroll":1,"bogus":1}, which is not legal in its space at {"rows":512,"dtype":"float32"}; skipped`,
    ]);
  });

  it('a workload where every schedule failed, the default included, keeps the default and counts each failure once', async () => {
    const s = await tuneWorkload({ ...opts(join(tmp(), 'r.jsonl'), 3), measurer: new ReplayMeasurer([replay('crash')]) });
    expect(s.source).toBe('default');
    expect(s.ok).toBe(0);
    expect(s.measurements).toBe(3);
    expect(s.failures).toBe(4); // three measured and the default, re-timed
    expect(s.notes.join(' ')).toMatch(/no schedule ran correctly, the default included/);
  });
});

describe('measurement counts', () => {
  it('name the budget\'s measurements apart from the re-timing, and never count more than the budget', async () => {
    const s = await tuneWorkload({ ...opts(join(tmp(), 'r.jsonl'), 3), measurer: new ReplayMeasurer([replay()]) });
    expect(s.measurements).toBe(3);
    expect(measuredText(s)).toMatch(/^3 measured \+ [1-4] re-timed \(the best and the default\)$/);
    expect(measuredText({ measurements: 2, resumed: 3, retimed: 4 })).toBe('2 measured + 3 from a stopped run + 4 re-timed (the best and the default)');
  });
});

describe('options given by hand', () => {
  // the shipped registry's entry: its fields and its choices of activation
  const k = kernelRegistry().kernels.gated_act as unknown as Pick<KernelInfo, 'workload_fields' | 'workload_choices'>;
  it('a --shape field is a positive whole number or one of its choices, given once', () => {
    expect(parseShape('rows=512,n=64,act=silu', 'gated_act', k)).toEqual({ rows: 512, n: 64, act: 'silu' });
    for (const [text, msg] of [
      ['rows=abc,n=4,act=silu', /rows is a size: a positive whole number in digits .*not 'abc'/],
      ['rows=-5,n=4,act=silu', /not '-5'/], ['rows=1.5,n=4,act=silu', /not '1.5'/], ['rows=0,n=4,act=silu', /not '0'/],
      ['rows=1e3,n=4,act=silu', /not '1e3'/], ['rows= 512,n=4,act=silu', /not ' 512'/],
      ['rows=4,n=4,act=foo', /act for gated_act is one of silu, gelu, gelu_tanh, not 'foo'/],
      ['rows=4,rows=8,n=4,act=silu', /gives rows twice/], ['rows=4,n=4', /missing: act/], ['rows=4,n=4,act=silu,m=2', /'m' is not one of its fields/],
    ] as const) expect(() => parseShape(text, 'gated_act', k), text).toThrow(msg);
  });

  it('a numeric option is digits only', () => {
    expect(wholeNumber('--repeats', '3', 5, 1)).toBe(3);
    expect(wholeNumber('--repeats', undefined, 5, 1)).toBe(5);
    for (const t of ['abc', '0', '-3', '1e3', '0x10', '', '2.5']) expect(() => wholeNumber('--repeats', t, 5, 1), t).toThrow(AdoptError);
    expect(() => wholeNumber('--seed', 'xyz', 0)).toThrow(/--seed takes a whole number, not 'xyz'/);
  });

  it('a record store that cannot be written is refused by name, and nothing is left behind', () => {
    const dir = tmp();
    writeFileSync(join(dir, 'afile'), '');
    expect(() => checkWritable(join(dir, 'afile', 'x.jsonl'), 'the record store')).toThrow(/cannot write the record store .*afile\/x\.jsonl: a part of its directory .* is a file/);
    expect(() => checkWritable(dir, 'the record store')).toThrow(/it is a directory/);
    checkWritable(join(dir, 'new', 'x.jsonl'), 'the record store');
    expect(() => readFileSync(join(dir, 'new', 'x.jsonl'))).toThrow(/ENOENT/);
  });

  it('a file that is not a schedule file is never overwritten; another target\'s entries are dropped with a warning', () => {
    const dir = tmp();
    const entry = [{ kernel: 'synth', workload, schedule: { block: 2, unroll: 1 } }];
    for (const text of ['plain text\n', '{"format": "adopt-schedules/1", "entries": [', '{"format": "other"}']) {
      const p = join(dir, 's.json');
      writeFileSync(p, text);
      expect(() => scheduleFileText(p, TARGET, entry), text).toThrow(/is not a schedule file .*not overwritten/);
    }
    const p = join(dir, 'foreign.json');
    writeFileSync(p, JSON.stringify({ format: 'adopt-schedules/1', target: { key: 'there' }, entries: [{ kernel: 'synth', workload: { rows: 8, dtype: 'float32' }, schedule: { block: 1, unroll: 1 } }] }));
    const warned: string[] = [];
    const out = JSON.parse(scheduleFileText(p, TARGET, entry, (m) => warned.push(m)));
    expect(out.entries).toEqual(entry);
    expect(warned).toEqual([`${p}: its 1 entry of target there dropped: the file now holds this target's (here) schedules`]);
    // a file naming no target (written by hand) keeps its entries, as the kernels use it
    const hand = join(dir, 'hand.json');
    const mine = { kernel: 'synth', workload: { rows: 8, dtype: 'float32' }, schedule: { block: 1, unroll: 1 } };
    writeFileSync(hand, JSON.stringify({ format: 'adopt-schedules/1', entries: [mine] }));
    const kept: string[] = [];
    expect(JSON.parse(scheduleFileText(hand, TARGET, entry, (m) => kept.push(m))).entries).toEqual([mine, ...entry]);
    expect(kept).toEqual([]);
  });
});

describe('adopt kernels status', () => {
  it('says which schedule file the process loads, its target and how many entries are used here', async () => {
    const { scheduleLine } = await import('../../src/cli/kernels.js');
    expect(scheduleLine(null)).toMatch(/^schedules: the defaults \(\$ADOPT_SCHEDULES unset/);
    expect(scheduleLine({ path: '/s.json', exists: true, target: 'aa', here: 'aa', entries: 3, used: 2 })).toBe('schedules: $ADOPT_SCHEDULES=/s.json, tuned for this target (aa); 2 of 3 entries used here');
    expect(scheduleLine({ path: '/s.json', exists: true, target: 'bb', here: 'aa', entries: 1, used: 0 })).toMatch(/tuned for target bb, not this one \(aa\): none used; 0 of 1 entry used here/);
    expect(scheduleLine({ path: '/s.json', exists: false, target: null, here: null, entries: 0, used: 0 })).toMatch(/does not exist: the defaults are used/);
  });
});

describe('records of another dtype', () => {
  it('are named as such, not as an older template', async () => {
    const db = join(tmp(), 'r.jsonl');
    const store = new RecordStore(db, () => {});
    store.append({ ...rec, schedule: { block: 8, unroll: 1 }, status: 'ok', median_s: 1e-3, source: 'retime' });
    store.append({ ...rec, template: 'older', schedule: { block: 8, unroll: 1 }, status: 'ok', median_s: 1e-3, source: 'retime' });
    const targetInfo = { target: TARGET, templates: { synth: { float32: 'tpl', bfloat16: 'tplb' } } };
    const s = await tuneWorkload({ ...opts(db, 0), workload: { rows: 512, dtype: 'bfloat16' }, targetInfo });
    expect(s.notes).toContain('1 record(s) of synth in float32: another dtype than bfloat16, not used for it');
    expect(s.notes).toContain('1 record(s) of an older template of synth ignored');
  });
});

describe('records that disagree', () => {
  const ok = (schedule: Record<string, number>, median_s: number, source: 'measure' | 'retime') => ({ ...rec, schedule, status: 'ok' as const, median_s, source });
  const failed = (schedule: Record<string, number>, status: 'compile_error' | 'wrong') => ({ ...rec, schedule, status, median_s: null, error: 'x', source: 'measure' as const });
  const dflt = { block: 1, unroll: 1 };

  it('a failure a later success of the same schedule follows does not rule it out; a wrong result does', () => {
    // a run whose compiler was broken, then a finished run
    const rs = [failed(dflt, 'compile_error'), failed({ block: 8, unroll: 2 }, 'compile_error'),
      ok(dflt, 2e-3, 'measure'), ok({ block: 8, unroll: 2 }, 1e-3, 'measure'), ok(dflt, 2e-3, 'retime'), ok({ block: 8, unroll: 2 }, 1e-3, 'retime')].map((r, i) => ({ kind: 'tune' as const, v: 1 as const, at: `${i}`, ...r }));
    const hit = exactHit(rs as never, workload);
    expect(hit?.schedule).toEqual({ block: 8, unroll: 2 });
    expect(hit?.failed.size).toBe(0);
    const wrong = [...rs, { ...rs[5], status: 'wrong', median_s: null, source: 'measure' }, { ...rs[5], at: 'later' }];
    expect(exactHit(wrong as never, workload)?.schedule).toEqual(dflt);
  });

  it("the nearest workload's best is its re-timing winner, not a lower batch median of a schedule that lost to the default", () => {
    const other = { ...workload, rows: (workload.rows as number) * 2 };
    const at = (r: Record<string, unknown>, i: number) => ({ kind: 'tune' as const, v: 1 as const, at: `${i}`, ...r, workload: other });
    const fast = { block: 8, unroll: 2 };
    const rs = [ok(fast, 1e-4, 'measure'), ok(dflt, 2e-3, 'measure'), ok(fast, 3e-3, 'retime'), ok(dflt, 2e-3, 'retime')].map(at);
    const space = new Space(PARAMS, dflt);
    expect(nearestPriors(rs as never, space, workload, 1)).toEqual([space.legalise(dflt, workload)]);
  });
});

describe('a store that ends mid-line', () => {
  it('keeps the next record: the torn line is ended first, and only it is skipped', () => {
    const db = join(tmp(), 'r.jsonl');
    const store = new RecordStore(db, () => {});
    store.append({ ...rec, schedule: { block: 1, unroll: 1 }, status: 'ok', median_s: 1e-3, source: 'measure' });
    writeFileSync(db, readFileSync(db, 'utf8') + '{"kind":"tune","v":1,"kern', { flag: 'w' });
    store.append({ ...rec, schedule: { block: 2, unroll: 1 }, status: 'ok', median_s: 2e-3, source: 'measure' });
    const warnings: string[] = [];
    const read = new RecordStore(db, (w) => warnings.push(w)).readAll();
    expect(read.records.map((r) => r.schedule.block)).toEqual([1, 2]);
    expect(new Set([...read.warnings, ...warnings]).size).toBe(1);
  });
});

describe('an earlier run that failed at every schedule', () => {
  it('is not a stopped run to resume: its schedules are measured again', async () => {
    const db = join(tmp(), 'r.jsonl');
    const store = new RecordStore(db, () => {});
    for (const s of [{ block: 1, unroll: 1 }, { block: 8, unroll: 2 }]) store.append({ ...rec, schedule: s, status: 'compile_error', median_s: null, error: 'no compiler', source: 'measure' });
    const s = await tuneWorkload({ ...opts(db, 4), measurer: new ReplayMeasurer([replay()]) });
    expect(s.resumed).toBe(0);
    expect(s.measurements).toBe(4);
    expect(s.notes.join(' ')).toMatch(/an earlier run of this workload failed at every schedule it measured \(2\); they are measured again/);
    expect(s.notes.join(' ')).not.toMatch(/resumed a stopped run/);
  });
});
