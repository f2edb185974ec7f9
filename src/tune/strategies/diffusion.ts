// Code diffusion: of a group of workloads of one kernel, tune representatives first (spread over
// the group by farthest-point choice in log-size space), then carry each representative's top
// schedules, legalised, to the workloads nearest it as priors of their guided search.
import { type Schedule, scheduleKey } from '../space.js';
import { guided } from './guided.js';
import { workloadDistance } from './reuse.js';
import type { Context, Outcome, Task } from './types.js';

/** Indices of k representatives: the most central workload first, then farthest-point. */
export function representatives(tasks: Task[], k: number): number[] {
  if (!tasks.length) return [];
  const d = (i: number, j: number) => workloadDistance(tasks[i].workload, tasks[j].workload);
  const idx = tasks.map((_, i) => i);
  const central = idx.reduce((best, i) => (idx.reduce((s, j) => s + Math.min(d(i, j), 1e6), 0) < idx.reduce((s, j) => s + Math.min(d(best, j), 1e6), 0) ? i : best), 0);
  const reps = [central];
  while (reps.length < Math.min(k, tasks.length)) {
    const far = idx.filter((i) => !reps.includes(i)).reduce((best, i) => (Math.min(...reps.map((r) => d(i, r))) > Math.min(...reps.map((r) => d(best, r))) ? i : best), idx.find((i) => !reps.includes(i)) as number);
    reps.push(far);
  }
  return reps;
}

export interface DiffusionResult {
  outcomes: Outcome[];
  /** Which tasks were tuned as representatives. */
  representative: boolean[];
}

/** Tunes every task of a group; `repBudget` for representatives, ctx.budget for the rest. */
export async function diffuse(tasks: Task[], ctx: Context,
  opts: { reps?: number; repBudget?: number; topK?: number; contextFor?: (i: number) => Partial<Context> } = {}): Promise<DiffusionResult> {
  const reps = representatives(tasks, opts.reps ?? Math.max(1, Math.round(tasks.length / 4)));
  const outcomes: Outcome[] = new Array(tasks.length);
  const search = guided({ name: 'diffusion' });
  for (const r of reps) outcomes[r] = await search.run(tasks[r], { ...ctx, ...opts.contextFor?.(r), budget: opts.repBudget ?? ctx.budget, stop: undefined });
  for (let i = 0; i < tasks.length; i++) {
    if (reps.includes(i)) continue;
    const nearest = reps.reduce((a, b) => (workloadDistance(tasks[i].workload, tasks[b].workload) < workloadDistance(tasks[i].workload, tasks[a].workload) ? b : a));
    const top = outcomes[nearest].trials.filter((t) => t.status === 'ok' && t.median_s !== null)
      .sort((a, b) => (a.median_s as number) - (b.median_s as number)).slice(0, opts.topK ?? 4);
    const priors: Schedule[] = [];
    const seen = new Set<string>();
    for (const t of top) {
      const s = tasks[i].space.legalise(t.schedule, tasks[i].workload);
      if (!seen.has(scheduleKey(s))) { seen.add(scheduleKey(s)); priors.push(s); }
    }
    outcomes[i] = await search.run(tasks[i], { ...ctx, ...opts.contextFor?.(i), priors: [...priors, ...(ctx.priors ?? [])] });
  }
  return { outcomes, representative: tasks.map((_, i) => reps.includes(i)) };
}
