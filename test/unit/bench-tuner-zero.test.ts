// The replay benchmark's picks made with no measurement: each is scored by the replayed time of
// exactly the schedule it names, and the reuse picks never see the workload they are scored on.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type Fold, Tally, zeroMeasurementPicks, zeroPicks } from '../../src/bench/tuner.js';
import type { CostModel } from '../../src/tune/cost-model.js';
import { featureNames, featurize } from '../../src/tune/features.js';
import { REPLAY_DIR, catalogOf } from '../../src/tune/pretrain.js';
import { loadReplayDir } from '../../src/tune/replay.js';
import { scheduleKey } from '../../src/tune/space.js';

const spaces = loadReplayDir(REPLAY_DIR).filter((s) => s.kernel === 'softmax');
const space = spaces[0];
const features = featureNames(catalogOf(spaces));
const unrollAt = features.indexOf('s.unroll');

/** A scorer that prefers the largest unroll factor (a fixed rule, so the expected pick is known). */
function fold(): Fold {
  const model = { features, predict: (x: number[][]) => x.map((v) => v[unrollAt]) } as unknown as CostModel;
  return { model, cached: true, seconds: 0 };
}

/** The key of a workload's fastest schedule. */
const bestKey = (w: (typeof space.workloads)[number]) => [...w.results.entries()].reduce((a, b) => ((b[1].median_s ?? Infinity) < (a[1].median_s ?? Infinity) ? b : a))[0];
const timeOf = (wi: number, s: Record<string, unknown>) => space.workloads[wi].results.get(scheduleKey(s))?.median_s as number;

describe('zeroMeasurementPicks', () => {
  it('scores the default, the reuse picks and the model top as fractions of each workload optimum', () => {
    expect(space, `softmax replay data under ${join(REPLAY_DIR)}`).toBeDefined();
    expect(unrollAt).toBeGreaterThanOrEqual(0);
    const picks = zeroMeasurementPicks(zeroPicks(spaces, [fold()]));
    expect(Object.keys(picks).sort()).toEqual(['consensus_record', 'default', 'model_top', 'nearest_record']);
    space.workloads.forEach((w, wi) => {
      expect(picks.default[wi]).toBeCloseTo(w.best_s / timeOf(wi, space.space.defaultAt(w.workload)), 12);
      for (const k of Object.keys(picks)) {
        expect(picks[k][wi]).toBeGreaterThan(0);
        expect(picks[k][wi]).toBeLessThanOrEqual(1);
      }
      // the model's top is a schedule with the largest unroll the space allows here
      const legal = space.space.enumerate(w.workload);
      const maxUnroll = Math.max(...legal.map((s) => Number(s.unroll)));
      const top = legal.find((s) => w.best_s / timeOf(wi, s) === picks.model_top[wi]);
      expect(top?.unroll).toBe(maxUnroll);
    });
  });

  it('takes the reuse picks from the other workloads only', () => {
    // the nearest-record pick is the optimum of some other workload, never read from this one
    const picks = zeroMeasurementPicks(zeroPicks(spaces, [fold()]));
    space.workloads.forEach((w, wi) => {
      const others = space.workloads.filter((_, i) => i !== wi);
      const candidates = others.map((o) => [...o.results.values()].reduce((a, b) => ((b.median_s ?? Infinity) < (a.median_s ?? Infinity) ? b : a)).schedule);
      const fractions = candidates.map((s) => w.best_s / timeOf(wi, space.space.legalise(s, w.workload)));
      expect(fractions.some((f) => Math.abs(f - picks.nearest_record[wi]) < 1e-12)).toBe(true);
      // where no other workload has this one's optimum as its own best, a pick read from this
      // workload's records (the optimum, fraction 1) would show here
      if (!others.some((o) => bestKey(o) === bestKey(w))) expect(picks.nearest_record[wi]).toBeLessThan(1);
    });
    // the check above must have had a workload to bite on
    expect(space.workloads.some((w, wi) => !space.workloads.some((o, oi) => oi !== wi && bestKey(o) === bestKey(w)))).toBe(true);
  });

  it('scores a pick missing from the replay data as 0 (a negative control for the lookup)', () => {
    const broken = { ...space, workloads: space.workloads.map((w) => ({ ...w, results: new Map() })) };
    const picks = zeroMeasurementPicks(zeroPicks([broken], [fold()]));
    expect(picks.default.every((x) => x === 0)).toBe(true);
  });
});

describe('Tally: counting what ships unmeasured', () => {
  const trial = (median_s: number) => ({ schedule: {}, status: 'ok' as const, median_s, compile_s: 0, run_s: 0 });
  const outcome = { strategy: 's', trials: [trial(2), trial(1.02), trial(1)], best: null, timing: { compile_s: 0, run_s: 0, model_s: 0, search_s: 0 } };

  it('counts 0 only for the thresholds the unmeasured pick reaches', () => {
    const t = new Tally();
    t.add('reuse', outcome, 1, 10, 0.96);
    const s = t.summary('reuse');
    expect(s.shipped).toEqual({ n90: 0, n95: 0, n99: 3 });
    expect([s.n90, s.n95, s.n99]).toEqual([2, 2, 3]);
  });

  it('counts as measured where the pick is unknown or short of every threshold', () => {
    const t = new Tally();
    t.add('search', outcome, 1, 10);
    t.add('search', outcome, 1, 10, 0.5);
    expect(t.summary('search').shipped).toEqual({ n90: 2, n95: 2, n99: 3 });
  });
});
