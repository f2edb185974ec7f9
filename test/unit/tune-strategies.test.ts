// Each strategy on a small synthetic replay space: it reaches the optimum within its budget and
// never picks a configuration that failed (even one recorded as "faster").
import { describe, expect, it } from 'vitest';
import { CostModel } from '../../src/tune/cost-model.js';
import { featureNames } from '../../src/tune/features.js';
import { groupsOf } from '../../src/tune/pretrain.js';
import { ReplayMeasurer, type ReplayFile, fromReplayFile, replayRecords } from '../../src/tune/replay.js';
import { Space, scheduleKey } from '../../src/tune/space.js';
import { autotvm, gridSearch, randomSearch } from '../../src/tune/strategies/baselines.js';
import { diffuse } from '../../src/tune/strategies/diffusion.js';
import { guided } from '../../src/tune/strategies/guided.js';
import { exactReuse, nearestReuse } from '../../src/tune/strategies/reuse.js';
import type { Context, Outcome, Task } from '../../src/tune/strategies/types.js';

const PARAMS = { block: [1, 2, 4, 8, 16, 32], order: ['ij', 'ji', 'tiled'], unroll: [1, 2, 4, 8] };
const TARGET = { key: 'synthetic', device: 'cpu', cores: 2, flags: ['avx2'] };
const WORKLOADS = [64, 128, 256, 512, 1024].map((rows) => ({ rows, n: 256, dtype: 'float32' }));

/** A smooth landscape: the best block grows with rows, 'tiled' is best, unroll 4 is best; two configs fail. */
function seconds(rows: number, s: Record<string, number | string>): number {
  const bestBlock = Math.log2(rows) - 5;
  const b = Math.log2(s.block as number);
  const o = s.order === 'tiled' ? 0 : s.order === 'ij' ? 0.3 : 0.6;
  const u = Math.abs(Math.log2(s.unroll as number) - 2) * 0.15;
  return 1e-3 * (1 + 0.25 * (b - bestBlock) ** 2 + o + u);
}

function synthetic(): ReplayFile {
  const space = new Space(PARAMS, { block: 4, order: 'ij', unroll: 1 });
  return {
    format: 'adopt-replay/1', kernel: 'synth', target: TARGET, template_hash: 'tpl', space: space.toJson(),
    workloads: WORKLOADS.map((w) => ({
      workload: w,
      results: space.enumerate(w).map((s) => {
        const fails = (s.block === 32 && s.unroll === 8) || (s.order === 'tiled' && s.block === 1);
        return fails
          ? { schedule: s, status: s.unroll === 8 ? 'crash' as const : 'wrong' as const, median_s: 1e-9 } // "fast" but failed
          : { schedule: s, status: 'ok' as const, median_s: seconds(w.rows as number, s) };
      }),
    })),
  };
}

const replay = fromReplayFile(synthetic());
const measurer = new ReplayMeasurer([replay]);
const task = (i: number): Task => ({ kernel: 'synth', workload: WORKLOADS[i], space: replay.space, target: TARGET });
const optimum = (i: number) => replay.workloads[i].best_s;

function check(o: Outcome, i: number, budget: number): void {
  const trail = `${o.strategy} at workload ${i}: ${o.trials.map((t) => `${JSON.stringify(t.schedule)}=${t.median_s}`).join(' ')}`;
  expect(o.trials.length, trail).toBeLessThanOrEqual(budget);
  expect(o.best?.median_s, trail).toBeCloseTo(optimum(i), 12);
  expect(o.best?.status).toBe('ok');
  expect(o.best?.median_s).toBeCloseTo(optimum(i), 12);
  const failed = new Set(o.trials.filter((t) => t.status !== 'ok').map((t) => scheduleKey(t.schedule)));
  expect(failed.has(scheduleKey(o.best!.schedule))).toBe(false);
  expect(new Set(o.trials.map((t) => scheduleKey(t.schedule))).size).toBe(o.trials.length); // nothing measured twice
}

async function pretrained(exclude: number): Promise<CostModel> {
  const names = featureNames({ synth: { space: replay.space.toJson(), workload_fields: ['rows', 'n', 'dtype'] } });
  const model = await CostModel.create(names, [32, 16], 0);
  const recs = replayRecords(replay, (_w, i) => i !== exclude);
  model.train(groupsOf(names, recs, new Map([['synthetic', TARGET]])), { steps: 150, lr: 5e-3 });
  return model;
}

describe('strategies on a synthetic replay space', () => {
  const size = replay.space.enumerate(WORKLOADS[2]).length;

  it('random, grid and both AutoTVM-style baselines reach the optimum within the whole space and never pick a failure', async () => {
    for (const s of [randomSearch, gridSearch, autotvm(64), autotvm(8)]) {
      const ctx: Context = { measurer, budget: size, seed: 3 };
      check(await s.run(task(2), ctx), 2, size);
    }
  });

  it('the pre-trained guided search reaches it in a fraction of the space; reuse in one batch; exact reuse in none', async () => {
    const model = await pretrained(2);
    const g = await guided().run(task(2), { measurer, budget: 24, seed: 1, model });
    check(g, 2, 24);
    const others = replayRecords(replay, (_w, i) => i !== 2);
    const near = await nearestReuse(others).run(task(2), { measurer, budget: 8, seed: 1, model });
    check(near, 2, 8);
    const exact = await exactReuse(replayRecords(replay)).run(task(2));
    expect(exact.trials.length).toBe(0);
    expect(exact.best?.median_s).toBeCloseTo(optimum(2), 12);
    const none = await exactReuse(others).run(task(2));
    expect(none.best).toBeNull();
    model.dispose();
  }, 60_000);

  it('diffusion tunes a representative, then carries its legalised best to the rest', async () => {
    const model = await pretrained(-1);
    const res = await diffuse(WORKLOADS.map((_, i) => task(i)), { measurer, budget: 32, seed: 2, model }, { reps: 1, repBudget: 24 });
    expect(res.representative.filter(Boolean).length).toBe(1);
    res.outcomes.forEach((o, i) => check(o, i, res.representative[i] ? 24 : 32));
    model.dispose();
  }, 60_000);
});
