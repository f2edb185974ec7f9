// The figures bench:models is judged by, from its rows: per input (seq<N> over the text models,
// image<N> for ViT) the median over models of the training-step ratio, rewritten time over
// original time; the slowest reading; and the readings slower with confidence. Each figure is
// given twice: as the ratio of the two sides' medians and as the ratio paired round by round
// (speed.py), which a change in the shared machine's speed during a run moves less.
import type { SpeedEntry, SpeedRow } from '../verify/results.js';
import { speedEntries } from '../verify/results.js';

/** The project's goals for the model table (training step, rewritten over original). */
export const MODEL_GOALS = {
  /** median over the text models at sequence 512: 1.2x faster */
  seq512: 1 / 1.2,
  /** median over the text models at sequence 128, and ViT's image: 1.1x faster */
  seq128: 1 / 1.1,
  image224: 1 / 1.1,
  /** no reading slower than 0.97x of the original's speed */
  slowest: 1 / 0.97,
};

export interface Reading { model: string; input: string; train_ratio: number; train_paired: number | null; q1: number | null; q3: number | null }

export interface InputHeadline {
  models: number;
  median_train_ratio: number;
  /** median over the models of each one's paired ratio; null where a row predates pairing */
  median_train_paired: number | null;
  median_forward_ratio: number;
  goal: number | null;
}

export interface ModelHeadline {
  inputs: Record<string, InputHeadline>;
  slowest: Reading | null;
  /** the slowest by the paired ratio, which may be another reading */
  slowest_paired: Reading | null;
  /** readings whose paired ratio's first quartile is above 1: most rounds found the rewrite slower */
  slower_with_confidence: Reading[];
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function reading(model: string, input: string, e: SpeedEntry): Reading {
  const p = e.paired?.train;
  return { model, input, train_ratio: e.train_ratio, train_paired: p?.median ?? null, q1: p?.q1 ?? null, q3: p?.q3 ?? null };
}

export function modelHeadline(rows: SpeedRow[]): ModelHeadline {
  const readings: Reading[] = [];
  const byInput = new Map<string, { readings: Reading[]; forward: number[] }>();
  for (const row of rows) {
    if (row.error) continue;
    for (const [input, e] of speedEntries(row)) {
      const r = reading(row.model, input, e);
      readings.push(r);
      const g = byInput.get(input) ?? { readings: [], forward: [] };
      g.readings.push(r);
      g.forward.push(e.forward_ratio);
      byInput.set(input, g);
    }
  }
  const inputs: Record<string, InputHeadline> = {};
  for (const [input, g] of [...byInput].sort(([a], [b]) => a.localeCompare(b, 'en', { numeric: true }))) {
    const paired = g.readings.map((r) => r.train_paired);
    inputs[input] = {
      models: g.readings.length,
      median_train_ratio: median(g.readings.map((r) => r.train_ratio)),
      median_train_paired: paired.every((p) => p !== null) ? median(paired as number[]) : null,
      median_forward_ratio: median(g.forward),
      goal: (MODEL_GOALS as Record<string, number>)[input] ?? null,
    };
  }
  const worst = (key: (r: Reading) => number | null) =>
    readings.filter((r) => key(r) !== null).reduce<Reading | null>((w, r) => (w === null || (key(r) as number) > (key(w) as number) ? r : w), null);
  return {
    inputs,
    slowest: worst((r) => r.train_ratio),
    slowest_paired: worst((r) => r.train_paired),
    slower_with_confidence: readings.filter((r) => r.q1 !== null && r.q1 > 1),
  };
}

/** The headline as lines of the benchmark's table. */
export function headlineLines(h: ModelHeadline): string[] {
  const f = (x: number | null) => (x === null ? 'n/a' : x.toFixed(3));
  const speed = (x: number | null) => (x === null ? '' : ` (${(1 / x).toFixed(2)}x)`);
  const lines = ['headline: training step, rewritten over original (below 1 is faster); median over the models of each input',
    `${'input'.padEnd(10)}${'models'.padStart(7)}${'ratio of medians'.padStart(24)}${'paired by round'.padStart(24)}${'forward'.padStart(9)}${'goal'.padStart(9)}`];
  for (const [input, g] of Object.entries(h.inputs)) {
    // met only when both estimates are at the goal
    const met = g.goal === null ? '' : Math.max(g.median_train_ratio, g.median_train_paired ?? -Infinity) <= g.goal ? '  met' : '  short';
    lines.push(`${input.padEnd(10)}${String(g.models).padStart(7)}${(f(g.median_train_ratio) + speed(g.median_train_ratio)).padStart(24)}${(f(g.median_train_paired) + speed(g.median_train_paired)).padStart(24)}${f(g.median_forward_ratio).padStart(9)}${(g.goal === null ? '' : f(g.goal)).padStart(9)}${met}`);
  }
  const said = (r: Reading | null) => (r === null ? 'n/a' : `${r.model} ${r.input}: ${f(r.train_ratio)}, paired ${f(r.train_paired)} (quartiles ${f(r.q1)}-${f(r.q3)})`);
  lines.push(`slowest reading: ${said(h.slowest)}`);
  if (h.slowest_paired && h.slowest_paired !== h.slowest) lines.push(`slowest paired: ${said(h.slowest_paired)}`);
  lines.push(`slower with confidence (first quartile of the paired ratio above 1): ${h.slower_with_confidence.length ? h.slower_with_confidence.map(said).join('; ') : 'none'}`);
  return lines;
}
