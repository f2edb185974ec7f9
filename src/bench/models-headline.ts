// The figures bench:models is judged by, from its rows: per input (seq<N> over the text models,
// image<N> for ViT) the median over models of the training-step ratio, rewritten time over
// original time; the slowest reading; and the readings a sign test calls slower. Each figure is
// given twice: as the ratio of the two sides' medians and as the ratio paired round by round
// (speed.py), which a change in the shared machine's speed during a run moves less.
import type { SpeedEntry, SpeedRow } from '../verify/results.js';
import { speedEntries } from '../verify/results.js';

/** The project's goals for the model table, as training-step time ratios (rewritten over original). */
export const INPUT_GOALS: Record<string, number> = {
  /** median over the text models at sequence 512: 1.2x faster */
  seq512: 1 / 1.2,
  /** median over the text models at sequence 128, and ViT's image: 1.1x faster */
  seq128: 1 / 1.1,
  image224: 1 / 1.1,
};
/** no reading slower than 0.97x of the original's speed */
export const SLOWEST_GOAL = 1 / 0.97;
/** a reading is called slower where a one-sided sign test over its rounds gives at most this */
export const SIGN_TEST_LEVEL = 0.05;

export interface Reading {
  model: string; input: string; train_ratio: number;
  /** the paired ratio's median and quartiles, and its rounds; null where a row predates pairing */
  train_paired: number | null; q1: number | null; q3: number | null;
  rounds: number | null; slower_rounds: number | null; p_slower: number | null;
}

export interface InputHeadline {
  models: number;
  median_train_ratio: number;
  /** median over the models of each one's paired ratio; null where a row predates pairing */
  median_train_paired: number | null;
  median_forward_ratio: number;
  goal: number | null;
  /** both estimates at the goal (the ratio of medians alone where the paired one is missing) */
  met: boolean | null;
}

export interface ModelHeadline {
  inputs: Record<string, InputHeadline>;
  slowest: Reading | null;
  /** the slowest by the paired ratio, which may be another reading */
  slowest_paired: Reading | null;
  slowest_goal: number;
  slowest_met: boolean | null;
  /** readings with at most SIGN_TEST_LEVEL chance of that many slower rounds were neither side faster */
  slower_by_sign_test: Reading[];
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function reading(model: string, input: string, e: SpeedEntry): Reading {
  const p = e.paired?.train;
  return {
    model, input, train_ratio: e.train_ratio, train_paired: p?.median ?? null, q1: p?.q1 ?? null, q3: p?.q3 ?? null,
    rounds: p?.rounds ?? null, slower_rounds: p?.slower_rounds ?? null, p_slower: p?.p_slower ?? null,
  };
}

const atMost = (goal: number, ...xs: (number | null)[]) => xs.every((x) => x === null || x <= goal);

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
    const ratio = median(g.readings.map((r) => r.train_ratio));
    const pairedMedian = paired.every((p) => p !== null) ? median(paired as number[]) : null;
    const goal = INPUT_GOALS[input] ?? null;
    inputs[input] = {
      models: g.readings.length, median_train_ratio: ratio, median_train_paired: pairedMedian,
      median_forward_ratio: median(g.forward), goal, met: goal === null ? null : atMost(goal, ratio, pairedMedian),
    };
  }
  const worst = (key: (r: Reading) => number | null) =>
    readings.filter((r) => key(r) !== null).reduce<Reading | null>((w, r) => (w === null || (key(r) as number) > (key(w) as number) ? r : w), null);
  const slowest = worst((r) => r.train_ratio);
  const slowestPaired = worst((r) => r.train_paired);
  return {
    inputs, slowest, slowest_paired: slowestPaired, slowest_goal: SLOWEST_GOAL,
    slowest_met: slowest === null ? null : atMost(SLOWEST_GOAL, slowest.train_ratio, slowestPaired?.train_paired ?? null),
    slower_by_sign_test: readings.filter((r) => r.p_slower !== null && r.p_slower <= SIGN_TEST_LEVEL),
  };
}

/** A time ratio as a speed: "1.19x faster", "1.06x slower". */
export function asSpeed(ratio: number): string {
  return ratio <= 1 ? `${(1 / ratio).toFixed(2)}x faster` : `${ratio.toFixed(2)}x slower`;
}

/** The headline as lines of the benchmark's table. */
export function headlineLines(h: ModelHeadline): string[] {
  const f = (x: number | null) => (x === null ? 'n/a' : x.toFixed(3));
  const both = (x: number | null) => (x === null ? 'n/a' : `${x.toFixed(3)} (${asSpeed(x)})`);
  const verdict = (met: boolean | null, pairedMissing: boolean) => (met === null ? '' : `${met ? 'met' : 'short'}${pairedMissing ? ' (ratio of medians only)' : ''}`);
  const lines = ['headline: training step, rewritten time over original time (below 1 is faster); per input, the median over its models',
    `${'input'.padEnd(10)}${'models'.padStart(7)}${'ratio of medians'.padStart(26)}${'paired by round'.padStart(26)}${'forward (medians)'.padStart(19)}${'goal'.padStart(8)}`];
  for (const [input, g] of Object.entries(h.inputs)) {
    lines.push(`${input.padEnd(10)}${String(g.models).padStart(7)}${both(g.median_train_ratio).padStart(26)}${both(g.median_train_paired).padStart(26)}${f(g.median_forward_ratio).padStart(19)}${(g.goal === null ? '' : f(g.goal)).padStart(8)}  ${verdict(g.met, g.median_train_paired === null)}`);
  }
  const said = (r: Reading | null) => (r === null ? 'n/a'
    : `${r.model} ${r.input}: ${f(r.train_ratio)}, paired ${f(r.train_paired)} (quartiles ${f(r.q1)}-${f(r.q3)}${r.rounds === null ? '' : `, slower in ${r.slower_rounds} of ${r.rounds} rounds`})`);
  lines.push(`slowest reading: ${said(h.slowest)}`);
  if (h.slowest_paired && h.slowest_paired !== h.slowest) lines.push(`slowest paired:  ${said(h.slowest_paired)}`);
  lines.push(`goal for the slowest: at most ${f(h.slowest_goal)} by both estimates: ${verdict(h.slowest_met, h.slowest_paired === null)}`);
  lines.push(`slower by a sign test over the rounds (chance at most ${SIGN_TEST_LEVEL} were neither side faster): ${h.slower_by_sign_test.length ? h.slower_by_sign_test.map(said).join('; ') : 'none'}`);
  return lines;
}
