// `adopt tune` and `adopt records`: a budget of 0 with an empty store gives the default schedule
// and says so; a tuning run records every measurement, an exact record then costs nothing, and
// records of another target are ignored (in process, over a synthetic replay space).
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CostModel, loadTf } from '../src/tune/cost-model.js';
import { featureNames, featurize } from '../src/tune/features.js';
import { ReplayMeasurer, fromReplayFile } from '../src/tune/replay.js';
import { RecordStore } from '../src/tune/records.js';
import { Space } from '../src/tune/space.js';
import { scheduleFileText } from '../src/tune/schedule-file.js';
import { tuneWorkload } from '../src/tune/tuner.js';
import { adopt, looksLikeCrash } from './helpers/cli.js';
import { PARAMS, registry, TARGET, workload } from './helpers/synth-kernel.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'adopt-tune-'));
const TRITON = join(__dirname, '..', '.cache', 'triton');

describe('adopt tune (CLI)', () => {
  it('with --budget 0 and an empty store gives the default schedule and a clear note', () => {
    const db = join(tmp(), 'records.jsonl');
    const sched = join(tmp(), 'schedules.json');
    const r = adopt(['tune', '--kernel', 'rms_norm', '--shape', 'rows=256,n=64', '--budget', '0', '--db', db, '--json', '--schedules', sched]);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s.source).toBe('default');
    expect(s.measurements).toBe(0);
    expect(s.notes.join(' ')).toMatch(/budget 0 and no record of this kernel on this target: the default schedule/);
    const file = JSON.parse(readFileSync(sched, 'utf8'));
    expect(file.format).toBe('adopt-schedules/1');
    expect(file.entries[0]).toMatchObject({ kernel: 'rms_norm', workload: { rows: 256, n: 64, dtype: 'float32' }, schedule: s.schedule });
    const list = adopt(['records', 'list', '--db', db]);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/no tuning records/);
  }, 180_000);

  it('rejects an unknown kernel, a malformed shape and a missing field with a message, not a crash', () => {
    for (const args of [['--kernel', 'nope', '--shape', 'rows=1'], ['--kernel', 'rms_norm', '--shape', 'rows'], ['--kernel', 'rms_norm', '--shape', 'rows=4'], ['--kernel', 'rms_norm', '--shape', 'rows=4,n=4', '--budget', '-1']]) {
      const r = adopt(['tune', ...args, '--db', join(tmp(), 'r.jsonl')]);
      expect(r.code, args.join(' ')).toBe(2);
      expect(looksLikeCrash(r.stderr)).toBe(false);
      expect(r.stderr).toMatch(/adopt: /);
    }
  }, 180_000);

  it('refuses bad numbers, shapes and paths before measuring anything, naming what is wrong', () => {
    const dir = tmp();
    const db = join(dir, 'r.jsonl');
    writeFileSync(join(dir, 'afile'), '');
    writeFileSync(join(dir, 'notes.txt'), 'my notes\n');
    const shape = ['--kernel', 'softmax', '--shape', 'rows=8,n=8'];
    const cases: [string[], RegExp][] = [
      [[...shape, '--repeats', 'abc'], /--repeats takes a whole number of at least 1, not 'abc'/],
      [[...shape, '--repeats', '0'], /--repeats takes a whole number of at least 1, not '0'/],
      [[...shape, '--seed', 'xyz'], /--seed takes a whole number, not 'xyz'/],
      [['--kernel', 'softmax', '--shape', 'rows=1.5,n=8'], /--shape rows is a size: a positive whole number/],
      [['--kernel', 'softmax', '--shape', 'rows=0,n=8'], /not '0'/],
      [['--kernel', 'softmax', '--shape', 'rows=8,rows=8,n=8'], /gives rows twice/],
      [['--kernel', 'gated_act', '--shape', 'rows=8,n=8,act=foo'], /act for gated_act is one of silu, gelu, gelu_tanh, not 'foo'/],
      [[...shape, '--db', join(dir, 'afile', 'x.jsonl')], /cannot write the record store .*afile\/x\.jsonl: a part of its directory .* is a file/],
      [[...shape, '--db', dir], /cannot write the record store .*: it is a directory/],
      [[...shape, '--schedules', join(dir, 'notes.txt')], /notes\.txt is not a schedule file \(not JSON.*not overwritten/],
    ];
    for (const [args, msg] of cases) {
      const r = adopt(['tune', ...args, '--budget', '2', ...(args.includes('--db') ? [] : ['--db', db])]);
      expect(r.code, args.join(' ')).toBe(2);
      expect(looksLikeCrash(r.stderr), r.stderr).toBe(false);
      expect(r.stderr, args.join(' ')).toMatch(msg);
    }
    expect(existsSync(db)).toBe(false); // nothing measured
    expect(readFileSync(join(dir, 'notes.txt'), 'utf8')).toBe('my notes\n');
  }, 180_000);

  it('a model file with a syntax error is named at its line, as rewrite does', () => {
    const dir = tmp();
    const file = join(dir, 'broken.py');
    writeFileSync(file, 'import torch\nclass M(torch.nn.Module:\n    pass\n');
    const r = adopt(['tune', file, '--db', join(dir, 'r.jsonl')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(new RegExp(`${file.replace(/[.]/g, '\\.')}:2:\\d+: error: syntax error`));
    expect(looksLikeCrash(r.stderr)).toBe(false);
  }, 120_000);

  it('--target cuda without a GPU says so plainly', () => {
    // the interpreter switched off: this machine's torch sees no GPU
    const env = { ADOPT_TRITON_INTERPRET: '0', TRITON_INTERPRET: '0', CUDA_VISIBLE_DEVICES: '' };
    const r = adopt(['tune', '--kernel', 'rms_norm', '--shape', 'rows=8,n=8', '--target', 'cuda', '--budget', '1', '--db', join(tmp(), 'r.jsonl')], { env });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^adopt: no CUDA device here/);
    expect(r.stderr).not.toMatch(/Traceback|RuntimeError|\|/);
  }, 120_000);

  // Triton's interpreter stands in for the GPU: the same measurer, space and records as on a device
  it.skipIf(!existsSync(TRITON))('--target cuda tunes the Triton kernel in its own space, recorded under a cuda target', () => {
    const db = join(tmp(), 'records.jsonl');
    const env = { TRITON_INTERPRET: '1', ADOPT_TRITON_INTERPRET: '1', PYTHONPATH: TRITON };
    const r = adopt(['tune', '--kernel', 'rms_norm', '--shape', 'rows=8,n=100', '--target', 'cuda', '--budget', '3', '--db', db, '--json'], { env });
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(Object.keys(s.schedule).sort()).toEqual(['bwd_rows', 'num_warps', 'rows']);
    expect(s.measurements).toBeGreaterThan(0);
    const recs = readFileSync(db, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(recs.every((x) => x.target === s.target)).toBe(true);
    const bad = adopt(['tune', '--kernel', 'rms_norm', '--shape', 'rows=8,n=100', '--target', 'tpu', '--db', db]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--target must be cpu or cuda, not 'tpu'/);
  }, 240_000);
});

const replay = fromReplayFile({
  format: 'adopt-replay/1', kernel: 'synth', target: TARGET, template_hash: 'tpl', space: registry.kernels.synth.space,
  workloads: [{ workload, results: new Space(PARAMS, { block: 1, unroll: 1 }).enumerate().map((s) => ({ schedule: s, status: 'ok' as const, median_s: 1e-3 * (1 + Math.abs(Math.log2(s.block as number) - 3) + 0.1 * (s.unroll as number)) })) }],
});
const info = { target: TARGET, templates: { synth: { float32: 'tpl' } } };

describe('tuneWorkload (in process, replayed)', () => {
  it('records every measurement, then reuses an exact record at no cost; other targets are ignored', async () => {
    const db = join(tmp(), 'records.jsonl');
    new RecordStore(db).append({ kernel: 'synth', template: 'tpl', workload, target: 'elsewhere', schedule: { block: 16, unroll: 4 }, status: 'ok', median_s: 1e-9, source: 'measure' });
    const warn: string[] = [];
    const first = await tuneWorkload({ kernel: 'synth', workload, budget: 15, strategy: 'random', db, registry, targetInfo: info, measurer: new ReplayMeasurer([replay]), model: null, warn: (m) => warn.push(m) });
    expect(first.source).toBe('measured');
    expect(first.schedule).toEqual({ block: 8, unroll: 1 });
    expect(first.speedup).toBeCloseTo(replay.workloads[0].results.get(JSON.stringify([['block', 1], ['unroll', 1]]))!.median_s! / 1.1e-3, 6);
    expect(first.notes.join(' ')).toMatch(/1 record\(s\) of synth from other targets ignored/);
    const recs = new RecordStore(db).forTarget('here');
    expect(recs.filter((r) => r.source === 'measure').length).toBe(15);
    expect(recs.some((r) => r.source === 'retime')).toBe(true);
    const again = await tuneWorkload({ kernel: 'synth', workload, budget: 15, db, registry, targetInfo: info, measurer: new ReplayMeasurer([replay]), model: null });
    expect(again.source).toBe('exact-record');
    expect(again.measurements).toBe(0);
    expect(again.schedule).toEqual({ block: 8, unroll: 1 });
    const zero = await tuneWorkload({ kernel: 'synth', workload: { rows: 1024, dtype: 'float32' }, budget: 0, db, registry, targetInfo: info, model: null });
    expect(zero.source).toBe('nearest-record');
    expect(zero.measurements).toBe(0);
    expect(warn).toEqual([]);
  });

  it('adapts the cost model to this target on its records, leaving the given model as it was', async () => {
    const db = join(tmp(), 'records.jsonl');
    const other = { rows: 1024, dtype: 'float32' };
    const two = fromReplayFile({
      format: 'adopt-replay/1', kernel: 'synth', target: TARGET, template_hash: 'tpl', space: registry.kernels.synth.space,
      workloads: [workload, other].map((w) => ({ workload: w, results: new Space(PARAMS, { block: 1, unroll: 1 }).enumerate().map((s) => ({ schedule: s, status: 'ok' as const, median_s: 1e-3 * (1 + Math.abs(Math.log2(s.block as number) - 3) + 0.1 * (s.unroll as number)) })) })),
    });
    const model = await CostModel.create(featureNames({ synth: { space: registry.kernels.synth.space, workload_fields: ['rows', 'dtype'] } }), [8], 0);
    const probe = new Space(PARAMS, { block: 1, unroll: 1 }).enumerate().map((s) => featurize(model.features, 'synth', other, s, TARGET));
    const before = model.predict(probe);
    const cold = await tuneWorkload({ kernel: 'synth', workload: other, budget: 4, strategy: 'guided', db, registry, targetInfo: info, measurer: new ReplayMeasurer([two]), model });
    expect(cold.notes.join(' ')).not.toMatch(/adapted/);
    await tuneWorkload({ kernel: 'synth', workload, budget: 15, strategy: 'random', db, registry, targetInfo: info, measurer: new ReplayMeasurer([two]), model: null });
    const tf = await loadTf();
    const tensors = tf.memory().numTensors;
    const warm = await tuneWorkload({ kernel: 'synth', workload: other, budget: 4, strategy: 'guided', db, registry, targetInfo: info, measurer: new ReplayMeasurer([two]), model, force: true });
    expect(tf.memory().numTensors).toBe(tensors); // the adapted copy (and the search's) disposed
    expect(warm.notes.join(' ')).toMatch(/cost model adapted to this target on its records of 2 workload\(s\)/);
    expect(model.predict(probe)).toEqual(before);
    const baseline = await tuneWorkload({ kernel: 'synth', workload: other, budget: 4, strategy: 'random', db, registry, targetInfo: info, measurer: new ReplayMeasurer([two]), model, force: true });
    expect(baseline.notes.join(' ')).not.toMatch(/adapted/); // a strategy that reads no model adapts none
    model.dispose();
  });

  it('merges a schedule file entry by kernel and workload', () => {
    const path = join(tmp(), 's.json');
    writeFileSync(path, scheduleFileText(path, TARGET, [{ kernel: 'synth', workload, schedule: { block: 2, unroll: 1 } }]));
    writeFileSync(path, scheduleFileText(path, TARGET, [{ kernel: 'synth', workload, schedule: { block: 8, unroll: 1 } }, { kernel: 'synth', workload: { rows: 8, dtype: 'float32' }, schedule: { block: 1, unroll: 1 } }]));
    const f = JSON.parse(readFileSync(path, 'utf8'));
    expect(f.entries.length).toBe(2);
    expect(f.entries[0].schedule).toEqual({ block: 8, unroll: 1 });
  });
});
