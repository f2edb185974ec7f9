// What every search strategy shares: the task, the context it runs in, the trials it made, and a
// loop that proposes batches, measures them and never measures a schedule twice.
import type { CostModel } from '../cost-model.js';
import type { Measurer, Status, Target } from '../measurer.js';
import { Rng } from '../rng.js';
import { type Schedule, type Space, type Workload, scheduleKey } from '../space.js';

export interface Task {
  kernel: string;
  workload: Workload;
  space: Space;
  target?: Target;
}

export interface Trial {
  schedule: Schedule;
  status: Status;
  median_s: number | null;
  compile_s: number;
  run_s: number;
}

export interface Timing {
  compile_s: number;
  run_s: number;
  model_s: number;
  search_s: number;
}

export interface Context {
  measurer: Measurer;
  /** Measurements allowed (each schedule measured counts one). */
  budget: number;
  seed: number;
  /** A pre-trained cost model; strategies that adapt it work on a copy. */
  model?: CostModel | null;
  /** Schedules to measure first (reuse, diffusion), already legal here. */
  priors?: Schedule[];
  /** Trials measured before, by a run that was stopped: they count against the budget and are
   *  never measured again (the search resumes where that run stopped). */
  done?: Trial[];
  /** Fine-tune the model online on this task's measurements (ablation: false). */
  finetune?: boolean;
  /** Batch size of model-guided strategies. */
  batch?: number;
  /** Exploration: the chance that a slot of a batch goes to a random schedule. */
  epsilon?: number;
  onTrial?: (t: Trial, index: number) => void;
  /** Stops the search early (the benchmark stops once replay says the optimum was measured). */
  stop?: (trials: Trial[]) => boolean;
}

export interface Outcome {
  strategy: string;
  trials: Trial[];
  best: Trial | null;
  timing: Timing;
  note?: string;
}

export interface Strategy {
  readonly name: string;
  run(task: Task, ctx: Context): Promise<Outcome>;
}

export function zeroTiming(): Timing {
  return { compile_s: 0, run_s: 0, model_s: 0, search_s: 0 };
}

/** The fastest ok trial; failures are never chosen. */
export function bestTrial(trials: Trial[]): Trial | null {
  let best: Trial | null = null;
  for (const t of trials) if (t.status === 'ok' && t.median_s !== null && (!best || t.median_s < (best.median_s as number))) best = t;
  return best;
}

export interface SearchState {
  task: Task;
  rng: Rng;
  /** Every legal schedule of the task's space at its workload. */
  candidates: Schedule[];
  trials: Trial[];
  measured: Set<string>;
  timing: Timing;
  remaining(): Schedule[];
}

/** Seconds spent in `fn`, added to `timing[key]`. */
export async function timed<T>(timing: Timing, key: keyof Timing, fn: () => T | Promise<T>): Promise<T> {
  const t = performance.now();
  try {
    return await fn();
  } finally {
    timing[key] += (performance.now() - t) / 1000;
  }
}

/**
 * Proposes batches until the budget is spent or the space is exhausted. `propose(state, n)` returns
 * up to n schedules (the loop drops any already measured); its time counts as search time, except
 * what it books itself as model time.
 */
export async function searchLoop(name: string, task: Task, ctx: Context,
  propose: (s: SearchState, n: number) => Promise<Schedule[]> | Schedule[], batchSize: number): Promise<Outcome> {
  const timing = zeroTiming();
  const state: SearchState = {
    task, rng: new Rng(ctx.seed), candidates: [], trials: [], measured: new Set(), timing,
    remaining() { return this.candidates.filter((c) => !this.measured.has(scheduleKey(c))); },
  };
  await timed(timing, 'search_s', () => { state.candidates = task.space.enumerate(task.workload); });
  for (const t of ctx.done ?? []) {
    if (state.measured.has(scheduleKey(t.schedule))) continue;
    state.measured.add(scheduleKey(t.schedule));
    state.trials.push(t);
  }
  const built = new Set<string>(); // builds this search has paid for
  while (state.trials.length < ctx.budget && state.measured.size < state.candidates.length && !ctx.stop?.(state.trials)) {
    const n = Math.min(batchSize, ctx.budget - state.trials.length);
    const before = timing.model_s;
    const t0 = performance.now();
    const raw = await propose(state, n);
    timing.search_s += (performance.now() - t0) / 1000 - (timing.model_s - before);
    const batch: Schedule[] = [];
    const seen = new Set<string>();
    for (const s of raw) {
      const k = scheduleKey(s);
      if (state.measured.has(k) || seen.has(k) || !task.space.legal(s, task.workload)) continue;
      seen.add(k);
      batch.push(s);
      if (batch.length === n) break;
    }
    if (!batch.length) break;
    const result = await ctx.measurer.measure(task.kernel, task.workload, batch);
    for (const r of result.results) {
      const compile = r.build === undefined || !built.has(r.build) ? r.compile_s : 0;
      if (r.build !== undefined) built.add(r.build);
      const t: Trial = { schedule: r.schedule, status: r.status, median_s: r.median_s, compile_s: compile, run_s: r.run_s };
      state.measured.add(scheduleKey(r.schedule));
      state.trials.push(t);
      timing.compile_s += compile;
      timing.run_s += r.run_s;
      ctx.onTrial?.(t, state.trials.length - 1);
    }
  }
  return { strategy: name, trials: state.trials, best: bestTrial(state.trials), timing };
}

/** Up to n random unmeasured schedules. */
export function randomPick(s: SearchState, n: number): Schedule[] {
  return s.rng.shuffle(s.remaining()).slice(0, n);
}
