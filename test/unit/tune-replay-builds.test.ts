// Schedules that differ only in their call-time OpenMP schedule share one build: replay charges its
// compile seconds once per search, whichever of them the search measures first.
import { describe, expect, it } from 'vitest';
import { type ReplayFile, ReplayMeasurer, fromReplayFile } from '../../src/tune/replay.js';
import { Space } from '../../src/tune/space.js';
import { gridSearch } from '../../src/tune/strategies/baselines.js';

const SPACE = new Space({ unroll: [1, 2], kind: ['static', 'dynamic', 'guided'] }, { unroll: 1, kind: 'static' }, [], { kind: 'kind' });

function file(): ReplayFile {
  const all = SPACE.enumerate({});
  return {
    format: 'adopt-replay/1', kernel: 'k', target: { key: 't', device: 'cpu' }, template_hash: 'h', space: SPACE.toJson(),
    // the measuring run built each unroll once, for its first kind; the others found it cached
    compile_s: Object.fromEntries(all.map((s) => [JSON.stringify(s), { seconds: s.kind === 'static' ? 2 : 0, cached: s.kind !== 'static' }])),
    workloads: [{ workload: { rows: 8 }, results: all.map((s, i) => ({ schedule: s, status: 'ok' as const, median_s: 1 + i })) }],
  };
}

describe('replayed compile seconds', () => {
  it('are the build key of a schedule, without its OpenMP parameters', () => {
    expect(SPACE.buildKey({ unroll: 2, kind: 'guided' })).toBe(SPACE.buildKey({ unroll: 2, kind: 'static' }));
    expect(SPACE.buildKey({ unroll: 2, kind: 'guided' })).not.toBe(SPACE.buildKey({ unroll: 1, kind: 'guided' }));
    expect(Space.fromJson(SPACE.toJson()).omp).toEqual({ kind: 'kind' });
  });

  it('are paid once per build by a search that measures all six schedules', async () => {
    const replay = fromReplayFile(file());
    const o = await gridSearch.run({ kernel: 'k', workload: { rows: 8 }, space: replay.space }, { measurer: new ReplayMeasurer([replay]), budget: 6, seed: 0 });
    expect(o.trials).toHaveLength(6);
    expect(o.timing.compile_s).toBe(4);
    // the first measurement of each build pays, whichever kind it is
    expect(o.trials.filter((t) => t.compile_s > 0)).toHaveLength(2);
  });
});
