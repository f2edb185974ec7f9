// The replay benchmark's bookkeeping: how many measurements a run took to reach a share of the
// optimum, what it held after N, where a replayed run may stop, and the medians over runs.
import type { Outcome, Timing, Trial } from '../tune/strategies/types.js';

export const THRESHOLDS = [0.9, 0.95, 0.99] as const;
export const CHECKPOINTS = [8, 16, 32, 64] as const;

export function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
}

export function median(xs: number[]): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((p, q) => p - q);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Measurements to reach `frac` of the optimum; budget + 1 when never reached. */
export function reachAt(trials: Trial[], best: number, frac: number, cap: number): number {
  let cur = Infinity;
  for (let i = 0; i < trials.length; i++) {
    const t = trials[i];
    if (t.status === 'ok' && t.median_s !== null) cur = Math.min(cur, t.median_s);
    if (best / cur >= frac - 1e-12) return i + 1;
  }
  return cap + 1;
}

/** The fraction of the optimum (optimum time / best time) after n measurements; a run stopped at the optimum stays there. */
function fractionAfter(trials: Trial[], best: number, n: number): number {
  let cur = Infinity;
  for (const t of trials.slice(0, n)) if (t.status === 'ok' && t.median_s !== null) cur = Math.min(cur, t.median_s);
  return Number.isFinite(cur) ? best / cur : 0;
}

/**
 * Where a replayed run may stop without changing any figure: at the optimum, or once it holds 99%
 * of it and has made the last checkpoint's measurements (n90/95/99 and @8..64 are then final).
 * The same rule for every strategy.
 */
export function doneAt(trials: Trial[], best: number): boolean {
  let cur = Infinity;
  for (const t of trials) if (t.status === 'ok' && t.median_s !== null) cur = Math.min(cur, t.median_s);
  return cur <= best || (best / cur >= 0.99 - 1e-12 && trials.length >= CHECKPOINTS[CHECKPOINTS.length - 1]);
}

/** `shipped`: as `n`, but 0 where the schedule the strategy ships before measuring anything (the default; a reuse strategy's records pick) already reaches the threshold. */
interface RunStat { n: Record<string, number>; shipped: Record<string, number>; after: Record<number, number>; timing: Timing; measurements: number }

export class Tally {
  readonly runs = new Map<string, RunStat[]>();

  /** `zero`: the fraction of the optimum of what the strategy would ship with no measurement (NaN: not known, counted as measured). */
  add(strategy: string, o: Outcome, best: number, cap: number, zero = NaN): void {
    const n: Record<string, number> = {};
    const shipped: Record<string, number> = {};
    for (const f of THRESHOLDS) {
      n[String(f)] = reachAt(o.trials, best, f, cap);
      shipped[String(f)] = zero >= f - 1e-12 ? 0 : n[String(f)];
    }
    const after: Record<number, number> = {};
    for (const c of CHECKPOINTS) after[c] = fractionAfter(o.trials, best, c);
    this.runs.set(strategy, [...(this.runs.get(strategy) ?? []), { n, shipped, after, timing: o.timing, measurements: o.trials.length }]);
  }

  summary(strategy: string) {
    const rs = this.runs.get(strategy) ?? [];
    return {
      runs: rs.length,
      n90: median(rs.map((r) => r.n['0.9'])), n95: median(rs.map((r) => r.n['0.95'])), n99: median(rs.map((r) => r.n['0.99'])),
      shipped: { n90: median(rs.map((r) => r.shipped['0.9'])), n95: median(rs.map((r) => r.shipped['0.95'])), n99: median(rs.map((r) => r.shipped['0.99'])) },
      after: Object.fromEntries(CHECKPOINTS.map((c) => [c, mean(rs.map((r) => r.after[c]))])),
      timing: { compile_s: mean(rs.map((r) => r.timing.compile_s)), run_s: mean(rs.map((r) => r.timing.run_s)), model_s: mean(rs.map((r) => r.timing.model_s)), search_s: mean(rs.map((r) => r.timing.search_s)) },
    };
  }
}

/** Where outcomes go: a tally, or several. */
export interface Sink { add: Tally['add'] }

export function fmt(x: number, d = 1): string {
  return Number.isFinite(x) ? x.toFixed(d) : '-';
}
