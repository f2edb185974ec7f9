// The tfjs cost model learns the order of a synthetic monotone space on held-out workloads
// (Kendall tau > 0.5), and a model trained on shuffled labels does not (negative control).
import { describe, expect, it } from 'vitest';
import { CostModel, type Group, kendallTau, sampleGroup, topKRecall } from '../../src/tune/cost-model.js';
import { featureMap, featureNames, featurize } from '../../src/tune/features.js';
import { Rng } from '../../src/tune/rng.js';
import { Space } from '../../src/tune/space.js';

const space = new Space({ tile: [1, 2, 4, 8, 16, 32, 64], vec: [128, 256], kind: ['static', 'dynamic'] }, { tile: 1, vec: 128, kind: 'static' });
const names = featureNames({ mono: { space: space.toJson(), workload_fields: ['rows', 'dtype'] } });
// goodness rises with tile, with vec, and 'dynamic' is better: monotone in every parameter
const goodness = (s: Record<string, number | string>) => Math.log2(s.tile as number) + (s.vec === 256 ? 1.5 : 0) + (s.kind === 'dynamic' ? 0.7 : 0);

function group(rows: number, shuffle?: Rng): Group {
  const all = space.enumerate();
  const y = all.map(goodness);
  if (shuffle) shuffle.shuffle(y);
  return { x: all.map((s) => featurize(names, 'mono', { rows, dtype: 'float32' }, s)), y };
}

describe('cost model', () => {
  it('ranks a held-out workload of a monotone space (tau > 0.5), and shuffled labels give tau near 0', async () => {
    const train = [256, 512, 2048, 4096].map((r) => group(r));
    const test = group(1024);
    const model = await CostModel.create(names, [32, 16], 0);
    model.train(train, { steps: 120, lr: 5e-3 });
    const tau = kendallTau(model.predict(test.x), test.y);
    expect(tau).toBeGreaterThan(0.5);
    expect(topKRecall(model.predict(test.x), test.y, 5)).toBeGreaterThanOrEqual(0.4);

    // negative control: the same training on labels shuffled within each group, over several
    // seeds (an untrained net is near-linear in these features, so one seed alone can correlate by chance)
    const taus: number[] = [];
    for (let seed = 1; seed <= 6; seed++) {
      const control = await CostModel.create(names, [32, 16], seed);
      const rng = new Rng(seed);
      control.train([256, 512, 2048, 4096].map((r) => group(r, rng)), { steps: 120, lr: 5e-3, seed });
      taus.push(kendallTau(control.predict(test.x), test.y));
      control.dispose();
    }
    expect(Math.abs(taus.reduce((a, b) => a + b, 0) / taus.length)).toBeLessThan(0.3);

    // saved and loaded weights predict the same
    const again = await CostModel.fromJson(JSON.parse(JSON.stringify(model.toJson())));
    const a = model.predict(test.x);
    const b = again.predict(test.x);
    a.forEach((v, i) => expect(b[i]).toBeCloseTo(v, 4));
    for (const m of [model, again]) m.dispose();
  }, 60_000);

  it('learns the order from a few rows of each group per step', async () => {
    const g = group(1024);
    const part = sampleGroup(g, 5, new Rng(3));
    expect(part.x).toHaveLength(5);
    // each sampled row keeps its own label, and no row is drawn twice
    part.x.forEach((row, i) => expect(part.y[i]).toBe(g.y[g.x.indexOf(row)]));
    expect(new Set(part.x).size).toBe(5);
    expect(sampleGroup(g, 1000, new Rng(3))).toBe(g);
    const model = await CostModel.create(names, [32, 16], 1);
    model.train([256, 512, 2048, 4096].map((r) => group(r)), { steps: 120, lr: 5e-3, rowsPerGroup: 6 });
    const test = group(1024);
    expect(kendallTau(model.predict(test.x), test.y)).toBeGreaterThan(0.5);
    model.dispose();
  }, 60_000);

  it("gives each kernel's parameter values columns of their own", () => {
    expect(names).toEqual(expect.arrayContaining(['mono:s.tile=8', 'mono:s.kind=dynamic', 'mono:s.vec=256']));
    const m = featureMap('mono', { rows: 64, dtype: 'float32' }, { tile: 8, vec: 128, kind: 'static' });
    expect([m.get('mono:s.tile=8'), m.get('mono:s.vec=128'), m.get('mono:s.kind=static'), m.get('mono:s.tile=4')]).toEqual([1, 1, 1, undefined]);
  });

  it('computes Kendall tau and top-k recall', () => {
    expect(kendallTau([1, 2, 3, 4], [10, 20, 30, 40])).toBe(1);
    expect(kendallTau([1, 2, 3, 4], [4, 3, 2, 1])).toBe(-1);
    expect(topKRecall([5, 4, 3, 2, 1], [1, 2, 3, 4, 5], 2)).toBe(0);
    expect(topKRecall([5, 4, 3, 2, 1], [5, 4, 1, 1, 1], 2)).toBe(1);
  });
});
