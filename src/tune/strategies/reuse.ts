// Tuning reuse: an exact record of this workload on this target costs no measurement; otherwise the
// best schedules of the nearest recorded workloads of the same kernel, legalised for this one, are
// measured first (priors of the guided search). Records of other targets never get here: the
// store hands out this target's only.
import { type Best, bestByWorkload, byWorkload, rankedSchedules, type TuneRecord } from '../records.js';
import { type Schedule, type Space, type Workload, scheduleKey, workloadKey } from '../space.js';
import { guided } from './guided.js';
import { type Context, type Outcome, type Strategy, type Task, zeroTiming } from './types.js';

/** log2 distance between two workloads: numeric fields by log ratio, a differing choice 1; another dtype is infinitely far. */
export function workloadDistance(a: Workload, b: Workload): number {
  if ((a.dtype ?? 'float32') !== (b.dtype ?? 'float32')) return Infinity;
  let d = 0;
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
    if (k === 'dtype') continue;
    const x = a[k];
    const y = b[k];
    if (typeof x === 'number' && typeof y === 'number') d += Math.abs(Math.log2(Math.max(x, 1)) - Math.log2(Math.max(y, 1)));
    else if (x !== y) d += 1;
  }
  return d;
}

/** The record of exactly this workload from a finished run, if any: an interrupted run's batch
 *  medians were never compared with the default, so they seed a resumed search instead. */
export function exactHit(records: TuneRecord[], workload: Workload): Best | null {
  const hit = bestByWorkload(records).get(workloadKey(workload));
  return hit?.finished ? hit : null;
}

/**
 * Up to k priors: the top schedules of the nearest other workloads (round-robin over the nearest
 * `spread`), legalised here, without duplicates.
 */
export function nearestPriors(records: TuneRecord[], space: Space, workload: Workload, k = 8, spread = 3): Schedule[] {
  const here = workloadKey(workload);
  // each workload ranked as its own records rank it (re-timing first), so that a schedule that
  // lost to the default there is not shipped ahead of it
  const near = [...byWorkload(records).entries()]
    .filter(([wk]) => wk !== here)
    .map(([, rs]) => ({ d: workloadDistance(workload, rs[0].workload), ranked: rankedSchedules(rs).map((x) => x.record.schedule) }))
    .filter((g) => Number.isFinite(g.d) && g.ranked.length)
    .sort((a, b) => a.d - b.d)
    .slice(0, spread);
  const out: Schedule[] = [];
  const seen = new Set<string>();
  for (let rank = 0; out.length < k && near.some((g) => rank < g.ranked.length); rank++) {
    for (const g of near) {
      if (rank >= g.ranked.length || out.length >= k) continue;
      const s = space.legalise(g.ranked[rank], workload);
      const key = scheduleKey(s);
      if (!seen.has(key)) { seen.add(key); out.push(s); }
    }
  }
  return out;
}

/** Exact reuse: the recorded best, no measurement; nothing when there is no record. */
export function exactReuse(records: TuneRecord[]): Strategy {
  return {
    name: 'exact',
    async run(task: Task): Promise<Outcome> {
      const hit = exactHit(records, task.workload);
      const best = hit ? { schedule: hit.schedule, status: 'ok' as const, median_s: hit.median_s, compile_s: 0, run_s: 0 } : null;
      return { strategy: 'exact', trials: [], best, timing: zeroTiming(), note: hit ? `exact record (${hit.measurements} measurements earlier)` : 'no record of this workload on this target' };
    },
  };
}

/** Nearest-workload reuse: the legalised best schedules of the nearest recorded workloads first, then the guided search. */
export function nearestReuse(records: TuneRecord[], k = 4): Strategy {
  const inner = guided({ name: 'nearest' });
  return {
    name: 'nearest',
    run(task: Task, ctx: Context): Promise<Outcome> {
      const priors = nearestPriors(records, task.space, task.workload, k);
      return inner.run(task, { ...ctx, priors: [...priors, ...(ctx.priors ?? [])] });
    },
  };
}

/**
 * Up to k priors ranked by consensus: each schedule's time over its workload's best, averaged over
 * the recorded workloads of the kernel (nearer workloads weigh more), so that one noisy median
 * does not decide. Schedules that failed anywhere are left out.
 */
export function consensusPriors(records: TuneRecord[], space: Space, workload: Workload, k = 4): Schedule[] {
  const groups = new Map<string, TuneRecord[]>();
  for (const r of records) {
    const wk = workloadKey(r.workload);
    if (wk !== workloadKey(workload)) groups.set(wk, [...(groups.get(wk) ?? []), r]);
  }
  const score = new Map<string, { schedule: Schedule; sum: number; weight: number }>();
  const failed = new Set<string>();
  for (const rs of groups.values()) {
    const d = workloadDistance(workload, rs[0].workload);
    if (!Number.isFinite(d)) continue;
    const ok = rs.filter((r) => r.status === 'ok' && r.median_s !== null && r.median_s > 0);
    if (!ok.length) continue;
    const best = Math.min(...ok.map((r) => r.median_s as number));
    const w = 1 / (1 + d);
    for (const r of rs) {
      const key = scheduleKey(r.schedule);
      if (r.status !== 'ok' || r.median_s === null) { failed.add(key); continue; }
      const s = score.get(key) ?? { schedule: r.schedule, sum: 0, weight: 0 };
      s.sum += w * Math.log2(r.median_s / best);
      s.weight += w;
      score.set(key, s);
    }
  }
  const out: Schedule[] = [];
  const seen = new Set<string>();
  for (const s of [...score.entries()].filter(([key]) => !failed.has(key)).map(([, v]) => v).sort((a, b) => a.sum / a.weight - b.sum / b.weight)) {
    const legal = space.legalise(s.schedule, workload);
    if (seen.has(scheduleKey(legal))) continue;
    seen.add(scheduleKey(legal));
    out.push(legal);
    if (out.length >= k) break;
  }
  return out;
}
