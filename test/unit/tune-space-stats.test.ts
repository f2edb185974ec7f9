// The replayed spaces' statistics: the share of schedules near the optimum and how much each
// parameter matters, on a space whose times are built from its parameters.
import { describe, expect, it } from 'vitest';
import { type ReplayFile, fromReplayFile } from '../../src/tune/replay.js';
import { formatSpaceStats, repeatSpearman, spaceStats, spearman } from '../../src/tune/space-stats.js';
import { Space } from '../../src/tune/space.js';

const SPACE = new Space({ unroll: [1, 2, 4, 8], kind: ['static', 'dynamic'] }, { unroll: 1, kind: 'static' });
// unroll costs 0, 1, 5 and 40% over the optimum; dynamic 3% more; unroll 8 dynamic fails
const COST: Record<number, number> = { 1: 1.4, 2: 1.0, 4: 1.01, 8: 1.05 };

function file(): ReplayFile {
  return {
    format: 'adopt-replay/1', kernel: 'k', target: { key: 't', device: 'cpu' }, template_hash: 'h', space: SPACE.toJson(),
    workloads: [{
      workload: { rows: 8 },
      results: SPACE.enumerate({}).map((s) => (s.unroll === 8 && s.kind === 'dynamic'
        ? { schedule: s, status: 'crash' as const, median_s: null }
        : { schedule: s, status: 'ok' as const, median_s: COST[s.unroll as number] * (s.kind === 'dynamic' ? 1.03 : 1) })),
    }],
  };
}

describe('spaceStats', () => {
  const st = spaceStats(fromReplayFile(file()));

  it('counts the ok schedules within each fraction of the optimum', () => {
    const w = st.workloads[0];
    expect([w.points, w.ok]).toEqual([8, 7]);
    // times over the optimum: 1, 1.01, 1.03, 1.0403, 1.05 within 95%; 1.4, 1.442 not
    expect(w.share['0.95']).toBeCloseTo(5 / 7);
    expect(w.share['0.99']).toBeCloseTo(2 / 7);
    expect(w.share['0.9']).toBeCloseTo(5 / 7);
    expect(w.range).toBeCloseTo(1.4 * 1.03);
  });

  it('ranks unroll, which moves times by 40%, above the kind, which moves them by 3%', () => {
    expect(st.spread.unroll).toBeGreaterThan(0.4);
    expect(st.spread.kind).toBeLessThan(0.1);
    expect(formatSpaceStats([st])).toMatch(/parameters by spread of mean log2 time: unroll [0-9.]+, kind/);
  });
});

describe('repeatability between repeats', () => {
  it('is 1 for an order that repeats, -1 for one that reverses, and ranks ties by their mean rank', () => {
    expect(spearman([1, 2, 3, 4], [10, 20, 30, 40])).toBeCloseTo(1);
    expect(spearman([1, 2, 3, 4], [4, 3, 2, 1])).toBeCloseTo(-1);
    // ranks [1, 2.5, 2.5, 4] against [1, 2, 3, 4]: 4.5 / sqrt(4.5 * 5)
    expect(spearman([1, 2, 2, 3], [1, 2, 3, 4])).toBeCloseTo(4.5 / Math.sqrt(4.5 * 5));
    expect(spearman([1, 2], [1, 2])).toBeNaN();
  });

  it('compares the first and second timed repeat of each schedule, and is printed per workload', () => {
    // first repeats in order 1 < 2 < 3, second repeats reversed: the order is noise
    expect(repeatSpearman([[1, 3, 9], [2, 2, 9], [3, 1, 9]])).toBeCloseTo(-1);
    expect(repeatSpearman([[1, 1], [2, 2], [3, 3], [4]])).toBeCloseTo(1);
    const f = file();
    f.workloads[0].results = f.workloads[0].results.map((r, i) => ({ ...r, times_s: [i, i + 0.5] }));
    const st = spaceStats(fromReplayFile(f));
    expect(st.workloads[0].repeatRho).toBeCloseTo(1);
    expect(formatSpaceStats([st]).split('\n')[1]).toMatch(/ 1\.00 {3}\{"rows":8\}/);
  });
});
