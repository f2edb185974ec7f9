// Gradient-boosted regression trees in plain TypeScript: the online model of the AutoTVM-style
// baseline (AutoTVM's own cost model is XGBoost, retrained from scratch on every batch). Small
// data (tens of rows), so exact split search is cheap.
interface Node { f: number; t: number; left: Node | number; right: Node | number }

function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
}

function fitTree(x: number[][], r: number[], idx: number[], depth: number, minLeaf: number): Node | number {
  if (depth === 0 || idx.length < 2 * minLeaf) return mean(idx.map((i) => r[i]));
  let best = { gain: 1e-12, f: -1, t: 0 };
  const total = idx.reduce((a, i) => a + r[i], 0);
  for (let f = 0; f < x[0].length; f++) {
    const sorted = [...idx].sort((a, b) => x[a][f] - x[b][f]);
    let sumL = 0;
    for (let k = 0; k < sorted.length - 1; k++) {
      sumL += r[sorted[k]];
      const nL = k + 1;
      const nR = sorted.length - nL;
      if (nL < minLeaf || nR < minLeaf || x[sorted[k]][f] === x[sorted[k + 1]][f]) continue;
      const gain = (sumL * sumL) / nL + ((total - sumL) * (total - sumL)) / nR - (total * total) / sorted.length;
      if (gain > best.gain) best = { gain, f, t: (x[sorted[k]][f] + x[sorted[k + 1]][f]) / 2 };
    }
  }
  if (best.f < 0) return mean(idx.map((i) => r[i]));
  const l = idx.filter((i) => x[i][best.f] <= best.t);
  const rr = idx.filter((i) => x[i][best.f] > best.t);
  return { f: best.f, t: best.t, left: fitTree(x, r, l, depth - 1, minLeaf), right: fitTree(x, r, rr, depth - 1, minLeaf) };
}

function predictTree(n: Node | number, row: number[]): number {
  while (typeof n !== 'number') n = row[n.f] <= n.t ? n.left : n.right;
  return n;
}

export class BoostedTrees {
  private trees: (Node | number)[] = [];
  private base = 0;

  constructor(private readonly rounds = 40, private readonly depth = 3, private readonly lr = 0.3, private readonly minLeaf = 2) {}

  fit(x: number[][], y: number[]): this {
    this.base = mean(y);
    const pred = y.map(() => this.base);
    const idx = y.map((_, i) => i);
    this.trees = [];
    for (let r = 0; r < this.rounds; r++) {
      const resid = y.map((v, i) => v - pred[i]);
      const tree = fitTree(x, resid, idx, this.depth, this.minLeaf);
      this.trees.push(tree);
      for (let i = 0; i < y.length; i++) pred[i] += this.lr * predictTree(tree, x[i]);
    }
    return this;
  }

  predict(x: number[][]): number[] {
    return x.map((row) => this.trees.reduce((s: number, t) => s + this.lr * predictTree(t, row), this.base));
  }
}
