import { describe, expect, it } from 'vitest';
import { asSpeed, headlineLines, median, modelHeadline } from '../../src/bench/models-headline.js';
import type { SpeedEntry, SpeedRow } from '../../src/verify/results.js';

/** An entry whose paired training ratio has these quartiles and median, and `slower` of 6 rounds slower. */
function entry(train: number, paired?: [number, number, number], slower = 0, forward = 0.9): SpeedEntry {
  const p = (m: number, q1: number, q3: number, k: number) => ({ median: m, q1, q3, rounds: 6, slower_rounds: k, p_slower: k === 6 ? 1 / 64 : k === 5 ? 7 / 64 : 0.5 });
  return {
    forward_original_s: 1, forward_rewritten_s: forward, forward_ratio: forward,
    train_original_s: 2, train_rewritten_s: 2 * train, train_ratio: train, per_rule: {}, memory_ratio: null,
    ...(paired ? { paired: { forward: p(forward, forward, forward, 0), train: p(paired[1], paired[0], paired[2], slower) } } : {}),
  };
}

describe('the model benchmark headline', () => {
  it('takes the median over the models of each input, both estimates, and finds the slowest', () => {
    const rows: SpeedRow[] = [
      { model: 'a', seq128: entry(0.80, [0.78, 0.80, 0.82]), seq512: entry(0.70, [0.68, 0.71, 0.72]) },
      { model: 'b', seq128: entry(1.10, [0.90, 0.95, 1.02], 5), seq512: entry(0.90, [0.88, 0.90, 0.93]) },
      { model: 'c', seq128: entry(0.90, [0.85, 0.88, 0.91]), seq512: entry(0.85, [1.02, 1.04, 1.08], 6) },
      { model: 'v', image224: entry(0.95, [0.93, 0.94, 0.96]) },
      { model: 'broken', error: 'ImportError: no module' },
    ];
    const h = modelHeadline(rows);
    expect(Object.keys(h.inputs)).toEqual(['image224', 'seq128', 'seq512']);
    expect(h.inputs.seq128).toMatchObject({ models: 3, median_train_ratio: 0.90, median_train_paired: 0.88, met: true });
    expect(h.inputs.seq512).toMatchObject({ models: 3, median_train_ratio: 0.85, median_train_paired: 0.90, met: false });
    expect(h.inputs.image224).toMatchObject({ models: 1, met: false });
    // the slowest by each estimate is a different reading; both miss the slowest goal
    expect(h.slowest).toMatchObject({ model: 'b', input: 'seq128', train_ratio: 1.10 });
    expect(h.slowest_paired).toMatchObject({ model: 'c', input: 'seq512', train_paired: 1.04 });
    expect(h.slowest_met).toBe(false);
    // five slower rounds of six is not enough for the sign test; six of six is
    expect(h.slower_by_sign_test.map((r) => `${r.model}@${r.input}`)).toEqual(['c@seq512']);
  });

  it('calls a goal met only when both estimates reach it', () => {
    const at = (ratio: number, paired: number) => modelHeadline([{ model: 'a', seq512: entry(ratio, [paired, paired, paired]) }]);
    const line = (ratio: number, paired: number) => headlineLines(at(ratio, paired)).find((l) => l.startsWith('seq512')) ?? '';
    expect(line(0.80, 0.81)).toMatch(/ met$/);
    expect(line(0.80, 0.86)).toMatch(/ short$/);
    expect(line(0.86, 0.80)).toMatch(/ short$/);
    expect(at(1.02, 1.03).slowest_met).toBe(true);
    expect(at(1.02, 1.04).slowest_met).toBe(false);
  });

  it('says so where only the ratio of medians could be judged', () => {
    const h = modelHeadline([{ model: 'a', seq128: entry(0.9) }, { model: 'b', seq128: entry(0.8, [0.7, 0.8, 0.9]) }]);
    expect(h.inputs.seq128.median_train_paired).toBeNull();
    expect(h.inputs.seq128.median_train_ratio).toBeCloseTo(0.85);
    expect(headlineLines(h).find((l) => l.startsWith('seq128'))).toMatch(/met \(ratio of medians only\)$/);
    expect(h.slower_by_sign_test).toEqual([]);
  });

  it('writes a ratio as a speed either way', () => {
    expect(asSpeed(0.8)).toBe('1.25x faster');
    expect(asSpeed(1.06)).toBe('1.06x slower');
  });

  it('median of an even count is the mean of the middle two', () => {
    expect(median([3, 1, 2, 10])).toBe(2.5);
    expect(median([5])).toBe(5);
  });
});
