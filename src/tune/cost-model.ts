// The cost model: a small MLP in tfjs (WASM backend; the tfjs CPU backend, with a note, where WASM
// does not start) that scores a configuration, higher meaning faster. It is trained with a
// pairwise ranking loss within each (kernel, workload) group — only the order of schedules at one
// workload matters to a search, not absolute seconds — pre-trained offline on the records shipped
// in fixtures/tuning/ (One-Shot Tuner), and fine-tuned in a few steps on this target's first
// measurements (few-shot adaptation). Weights are saved as JSON with their feature names.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type * as TF from '@tensorflow/tfjs';
import { Rng } from './rng.js';

type Tf = typeof TF;
let tfPromise: Promise<Tf> | null = null;
let backendNote = '';

/** tfjs with the WASM backend, initialised once per process. */
export function loadTf(): Promise<Tf> {
  if (!tfPromise) {
    tfPromise = (async () => {
      const tf = await import('@tensorflow/tfjs');
      try {
        await import('@tensorflow/tfjs-backend-wasm');
        if (!(await tf.setBackend('wasm'))) throw new Error('setBackend returned false');
        await tf.ready();
      } catch (e) {
        backendNote = `tfjs WASM backend did not start (${(e as Error).message}); using the tfjs CPU backend`;
        await tf.setBackend('cpu');
        await tf.ready();
      }
      return tf;
    })();
  }
  return tfPromise;
}

export function backendInfo(): { backend: string; note: string } {
  return { backend: backendNote ? 'cpu' : 'wasm', note: backendNote };
}

/** One (kernel, workload) group: feature rows and their goodness (higher = faster, e.g. -log seconds). */
export interface Group {
  x: number[][];
  y: number[];
}

export interface TrainOptions {
  steps?: number;
  lr?: number;
  /** Groups per step (each step's pairs are all the ordered pairs within its groups). */
  groupsPerStep?: number;
  /** Rows sampled from each group per step (all when unset): keeps the N x N pair mask of a
   *  step small on spaces of hundreds of schedules. */
  rowsPerGroup?: number;
  seed?: number;
}

export interface SavedModel {
  format: 'adopt-cost-model/1';
  features: string[];
  hidden: number[];
  weights: number[][];
  shapes: number[][];
  meta: Record<string, unknown>;
}

/** A variable holding `t`'s values; `t` itself is released (a variable keeps its own handle, so the tensor would outlive the model). */
function variableOf(tf: Tf, t: TF.Tensor): TF.Variable {
  const v = tf.variable(t);
  t.dispose();
  return v;
}

export class CostModel {
  private vars: TF.Variable[] = [];
  meta: Record<string, unknown> = {};

  private constructor(private readonly tf: Tf, readonly features: string[], readonly hidden: number[]) {}

  /** A fresh model with seeded weights (He initialisation). */
  static async create(features: string[], hidden: number[] = [64, 32], seed = 0): Promise<CostModel> {
    const tf = await loadTf();
    const m = new CostModel(tf, features, hidden);
    const sizes = [features.length, ...hidden, 1];
    const rng = new Rng(seed + 17);
    for (let i = 0; i + 1 < sizes.length; i++) {
      const std = Math.sqrt(2 / sizes[i]);
      const w = Array.from({ length: sizes[i] * sizes[i + 1] }, () => rng.normal() * std);
      m.vars.push(variableOf(tf, tf.tensor2d(w, [sizes[i], sizes[i + 1]])));
      m.vars.push(variableOf(tf, tf.zeros([sizes[i + 1]])));
    }
    return m;
  }

  static async fromJson(s: SavedModel): Promise<CostModel> {
    if (s.format !== 'adopt-cost-model/1') throw new Error(`not a cost model (format ${String(s.format)})`);
    const tf = await loadTf();
    const m = new CostModel(tf, s.features, s.hidden);
    m.vars = s.weights.map((w, i) => variableOf(tf, tf.tensor(w, s.shapes[i])));
    m.meta = s.meta ?? {};
    return m;
  }

  static async load(path: string): Promise<CostModel | null> {
    if (!existsSync(path)) return null;
    return CostModel.fromJson(JSON.parse(readFileSync(path, 'utf8')) as SavedModel);
  }

  toJson(): SavedModel {
    return {
      format: 'adopt-cost-model/1', features: this.features, hidden: this.hidden,
      weights: this.vars.map((v) => Array.from(v.dataSync()).map((x) => Math.round(x * 1e6) / 1e6)),
      shapes: this.vars.map((v) => v.shape), meta: this.meta,
    };
  }

  save(path: string): void {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, `${JSON.stringify(this.toJson())}\n`);
  }

  async clone(): Promise<CostModel> {
    return CostModel.fromJson(this.toJson());
  }

  dispose(): void {
    for (const v of this.vars) v.dispose();
    this.vars = [];
  }

  private forward(x: TF.Tensor2D): TF.Tensor1D {
    const tf = this.tf;
    let h: TF.Tensor2D = x;
    for (let i = 0; i < this.vars.length; i += 2) {
      h = tf.add(tf.matMul(h, this.vars[i] as TF.Tensor2D), this.vars[i + 1]) as TF.Tensor2D;
      if (i + 2 < this.vars.length) h = tf.relu(h);
    }
    return tf.reshape(h, [-1]) as TF.Tensor1D;
  }

  /** Scores, higher = predicted faster. */
  predict(x: number[][]): number[] {
    if (!x.length) return [];
    const tf = this.tf;
    return tf.tidy(() => Array.from(this.forward(tf.tensor2d(x, [x.length, this.features.length])).dataSync()));
  }

  /**
   * Pairwise ranking loss (RankNet) over every ordered pair of a group: for y_i > y_j, minimise
   * log(1 + exp(-(s_i - s_j))), weighted by how far apart they are (capped). Pairs are formed
   * densely (an N x N mask over the step's rows), which keeps the op count small and needs no
   * gather (tfjs-wasm has no gradient for it). Each step takes up to `groupsPerStep` groups.
   * Returns the last loss.
   */
  train(groups: Group[], opts: TrainOptions = {}): number {
    const tf = this.tf;
    const usable = groups.filter((g) => g.x.length >= 2 && new Set(g.y).size >= 2);
    if (!usable.length) return NaN;
    const rng = new Rng(opts.seed ?? 0);
    const per = opts.groupsPerStep ?? 8;
    const optimizer = tf.train.adam(opts.lr ?? 3e-3);
    const F = this.features.length;
    let fixed: { X: TF.Tensor2D; M: TF.Tensor2D; total: number } | null = null;
    const build = (gs: Group[]) => {
      const n = gs.reduce((a, g) => a + g.x.length, 0);
      const x = new Float32Array(n * F);
      const m = new Float32Array(n * n);
      let off = 0;
      let total = 0;
      for (const g of gs) {
        g.x.forEach((row, i) => x.set(row, (off + i) * F));
        for (let i = 0; i < g.y.length; i++) {
          for (let j = 0; j < g.y.length; j++) {
            const d = g.y[i] - g.y[j];
            if (d > 1e-9) { const w = Math.min(d, 1) + 0.05; m[(off + i) * n + off + j] = w; total += w; }
          }
        }
        off += g.x.length;
      }
      return { X: tf.tensor2d(x, [n, F]), M: tf.tensor2d(m, [n, n]), total };
    };
    const rows = opts.rowsPerGroup;
    const sample = (g: Group): Group => sampleGroup(g, rows, rng);
    const sampled = rows !== undefined && usable.some((g) => g.x.length > rows);
    if (usable.length <= per && !sampled) fixed = build(usable);
    let last = NaN;
    try {
      for (let step = 0; step < (opts.steps ?? 200); step++) {
        const batch = fixed ?? build(rng.shuffle([...usable]).slice(0, per).map(sample));
        const loss = optimizer.minimize(() => {
          const s = this.forward(batch.X);
          const n = batch.X.shape[0];
          const diff = tf.sub(tf.reshape(s, [n, 1]), tf.reshape(s, [1, n]));
          return tf.div(tf.sum(tf.mul(tf.softplus(tf.neg(diff)), batch.M)), batch.total) as TF.Scalar;
        }, true, this.vars);
        if (loss) { last = loss.dataSync()[0]; loss.dispose(); }
        if (!fixed) { batch.X.dispose(); batch.M.dispose(); }
      }
    } finally {
      if (fixed) { fixed.X.dispose(); fixed.M.dispose(); }
      optimizer.dispose();
    }
    return last;
  }
}

/** Up to `rows` rows of a group, drawn without replacement, each with its own label; the group itself when it is no larger. */
export function sampleGroup(g: Group, rows: number | undefined, rng: Rng): Group {
  if (!rows || g.x.length <= rows) return g;
  const idx = rng.shuffle(g.x.map((_, i) => i)).slice(0, rows);
  return { x: idx.map((i) => g.x[i]), y: idx.map((i) => g.y[i]) };
}

/** Kendall's tau-b between two score lists (1: same order, 0: unrelated, -1: reversed). */
export function kendallTau(a: number[], b: number[]): number {
  let conc = 0;
  let disc = 0;
  let tiesA = 0;
  let tiesB = 0;
  for (let i = 0; i < a.length; i++) {
    for (let j = i + 1; j < a.length; j++) {
      const da = Math.sign(a[i] - a[j]);
      const db = Math.sign(b[i] - b[j]);
      if (da === 0 && db === 0) continue;
      if (da === 0) tiesA++;
      else if (db === 0) tiesB++;
      else if (da === db) conc++;
      else disc++;
    }
  }
  const denom = Math.sqrt((conc + disc + tiesA) * (conc + disc + tiesB));
  return denom ? (conc - disc) / denom : 0;
}

/** How many of the true top-k (highest `truth`) are among the predicted top-k, over k. */
export function topKRecall(pred: number[], truth: number[], k = 5): number {
  const order = (xs: number[]) => xs.map((v, i) => [v, i] as const).sort((p, q) => q[0] - p[0]).slice(0, k).map(([, i]) => i);
  const t = new Set(order(truth));
  return order(pred).filter((i) => t.has(i)).length / Math.min(k, pred.length);
}
