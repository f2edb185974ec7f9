// What a replayed space looks like to a search: per workload, how many schedules it holds and what
// share of them lies within 90/95/99% of the optimum (a random search needs about 1/share
// measurements), and per parameter how much it matters (the spread of the mean log2 time over its
// values). A space where most schedules are near the optimum cannot separate a tuner from random.
import type { ReplaySpace } from './replay.js';

export interface WorkloadStats {
  workload: Record<string, unknown>;
  points: number;
  ok: number;
  /** Share of the ok schedules within 90, 95 and 99% of the optimum (optimum time / time). */
  share: Record<'0.9' | '0.95' | '0.99', number>;
  /** Slowest ok time over the optimum. */
  range: number;
  /** Spearman rank correlation of the schedules' times between the first two repeats (NaN with fewer): whether the order repeats. */
  repeatRho: number;
}

export interface SpaceStats {
  kernel: string;
  points: number;
  workloads: WorkloadStats[];
  /** Per parameter: spread (max - min) of the mean log2 time over its values, averaged over workloads. */
  spread: Record<string, number>;
}

export function spaceStats(s: ReplaySpace): SpaceStats {
  const spreadSum: Record<string, number> = {};
  const workloads = s.workloads.map((w) => {
    const ok = [...w.results.values()].filter((e) => e.status === 'ok' && e.median_s !== null);
    const times = ok.map((e) => e.median_s as number);
    const share = (f: number) => times.filter((t) => w.best_s / t >= f - 1e-12).length / Math.max(1, times.length);
    for (const [p, values] of Object.entries(s.space.params)) {
      const means = values.map((v) => {
        const ts = ok.filter((e) => e.schedule[p] === v).map((e) => Math.log2(e.median_s as number));
        return ts.length ? ts.reduce((a, b) => a + b, 0) / ts.length : NaN;
      }).filter(Number.isFinite);
      spreadSum[p] = (spreadSum[p] ?? 0) + (means.length ? Math.max(...means) - Math.min(...means) : 0);
    }
    return {
      workload: w.workload, points: w.results.size, ok: ok.length,
      share: { '0.9': share(0.9), '0.95': share(0.95), '0.99': share(0.99) },
      range: times.length ? Math.max(...times) / w.best_s : NaN,
      repeatRho: repeatSpearman(ok.map((e) => e.times_s ?? [])),
    };
  });
  const spread = Object.fromEntries(Object.entries(spreadSum).map(([p, v]) => [p, v / Math.max(1, s.workloads.length)]));
  return { kernel: s.kernel, points: s.space.size, workloads, spread };
}

/** Ranks (1-based, ties averaged). */
function ranks(xs: number[]): number[] {
  const order = xs.map((x, i) => [x, i] as const).sort((a, b) => a[0] - b[0]);
  const r = new Array<number>(xs.length);
  for (let i = 0; i < order.length;) {
    let j = i;
    while (j + 1 < order.length && order[j + 1][0] === order[i][0]) j++;
    for (let k = i; k <= j; k++) r[order[k][1]] = (i + j) / 2 + 1;
    i = j + 1;
  }
  return r;
}

export function spearman(a: number[], b: number[]): number {
  if (a.length !== b.length || a.length < 3) return NaN;
  const [ra, rb] = [ranks(a), ranks(b)];
  const mean = (xs: number[]) => xs.reduce((p, q) => p + q, 0) / xs.length;
  const [ma, mb] = [mean(ra), mean(rb)];
  let num = 0, da = 0, db = 0;
  for (let i = 0; i < ra.length; i++) {
    num += (ra[i] - ma) * (rb[i] - mb);
    da += (ra[i] - ma) ** 2;
    db += (rb[i] - mb) ** 2;
  }
  return da && db ? num / Math.sqrt(da * db) : NaN;
}

/** Spearman between the first and second timed repeat over the schedules that have both. */
export function repeatSpearman(times: number[][]): number {
  const both = times.filter((t) => t.length >= 2);
  return spearman(both.map((t) => t[0]), both.map((t) => t[1]));
}

function pct(x: number): string {
  return `${(100 * x).toFixed(1)}%`;
}

/** A table: one line per kernel and workload, then each kernel's parameters by how much they matter. */
export function formatSpaceStats(stats: SpaceStats[]): string {
  const lines = [`${'kernel'.padEnd(18)} ${'points'.padStart(6)}  share within 90/95/99% of the optimum, slowest/optimum, repeat rho   workload`];
  for (const st of stats) {
    for (const w of st.workloads) {
      lines.push(`${st.kernel.padEnd(18)} ${String(w.points).padStart(6)}  ${[pct(w.share['0.9']), pct(w.share['0.95']), pct(w.share['0.99'])].map((x) => x.padStart(6)).join(' ')}  x${w.range.toFixed(2).padEnd(6)} ${(Number.isFinite(w.repeatRho) ? w.repeatRho.toFixed(2) : '-').padStart(5)}   ${JSON.stringify(w.workload)}`);
    }
    const ranked = Object.entries(st.spread).sort((a, b) => b[1] - a[1]);
    lines.push(`${''.padEnd(18)} parameters by spread of mean log2 time: ${ranked.map(([p, v]) => `${p} ${v.toFixed(2)}`).join(', ')}`);
  }
  return lines.join('\n');
}
