// Tuning one workload end to end, as `adopt tune --kernel K --shape ...` does: records first (an
// exact record of this target costs no measurement; a budget of 0 uses records only), else a
// strategy over a measurer that writes each result to the record store as it comes in (killing a
// run loses at most the measurement in flight), then the finalists and the default re-timed
// interleaved, and the winner chosen from that.
import { existsSync } from 'node:fs';
import type { CostModel } from './cost-model.js';
import { type Batch, LocalMeasurer, type Measurer, MeasurerError, type MeasureOptions, type Target, type TargetInfo, localTargetInfo } from './measurer.js';
import { PRETRAINED_PATH, adaptToTarget } from './pretrain.js';
import { RecordStore, type TuneRecord, medianBySchedule, recordPlace } from './records.js';
import { type Device, type Registry, type Schedule, type Space, type Workload, kernelSpace, loadRegistry, sameSchedule, scheduleKey, workloadKey } from './space.js';
import { autotvm, gridSearch, randomSearch } from './strategies/baselines.js';
import { guided } from './strategies/guided.js';
import { consensusPriors, exactHit, nearestPriors } from './strategies/reuse.js';
import { type Outcome, type Strategy, type Trial, bestTrial } from './strategies/types.js';

export const STRATEGIES = ['auto', 'guided', 'nearest', 'diffusion', 'random', 'grid', 'autotvm64', 'autotvm8'] as const;
export type StrategyName = (typeof STRATEGIES)[number];

export interface TuneOptions {
  kernel: string;
  workload: Workload;
  budget: number;
  strategy?: StrategyName;
  db?: string;
  seed?: number;
  force?: boolean;
  measurer?: Measurer;
  targetInfo?: TargetInfo;
  /** The device tuned for (default cpu); its space is the kernel's space there. */
  device?: Device;
  registry?: Registry;
  model?: CostModel | null;
  /** Load the pre-trained model from fixtures when `model` is not given (default true). */
  pretrained?: boolean;
  onTrial?: (t: Trial, i: number) => void;
  warn?: (msg: string) => void;
}

export interface TuneSummary {
  kernel: string;
  workload: Workload;
  target: string;
  template: string;
  strategy: string;
  schedule: Schedule;
  /** Where the schedule came from. */
  source: 'exact-record' | 'nearest-record' | 'default' | 'measured';
  /** Schedules this run's search measured: what `--budget` allows (the re-timing is not one). */
  measurements: number;
  /** Schedules an earlier run of this workload measured before it was stopped, taken as measured
   *  here: they count against the budget too. */
  resumed: number;
  /** Schedules timed again interleaved at the end: the best measured and the default. */
  retimed: number;
  seconds: number;
  default_s: number | null;
  best_s: number | null;
  /** Default's time over the chosen schedule's (above 1: the tuned schedule is faster). */
  speedup: number | null;
  /** Schedules that failed (measured, resumed or re-timed), each counted once; never chosen. */
  failures: number;
  /** Schedules that ran correctly (measured, resumed or re-timed). */
  ok: number;
  notes: string[];
  db: string;
}

type Base = Omit<TuneSummary, 'schedule' | 'source' | 'measurements' | 'resumed' | 'retimed' | 'default_s' | 'best_s' | 'speedup' | 'failures' | 'ok'>;
const NOTHING_MEASURED = { measurements: 0, resumed: 0, retimed: 0, default_s: null, best_s: null, speedup: null, failures: 0, ok: 0 } as const;

/** Writes every result to the store as it arrives (or, for measurers without progress, after the batch). */
class RecordingMeasurer implements Measurer {
  readonly name: string;
  count = 0;

  constructor(private readonly inner: Measurer, private readonly store: RecordStore, private readonly base: { template: string; target: Target }) {
    this.name = inner.name;
  }

  private write(kernel: string, workload: Workload, r: Batch['results'][number], source: TuneRecord['source']): void {
    this.store.append({
      kernel, template: this.base.template, workload, target: this.base.target.key, target_info: this.base.target,
      schedule: r.schedule, status: r.status, median_s: r.median_s, compile_s: r.compile_s, source,
      ...(r.status === 'ok' ? {} : { error: r.error ?? null }),
    });
  }

  async measure(kernel: string, workload: Workload, schedules: Schedule[], opts: MeasureOptions = {}): Promise<Batch> {
    const written = new Set<number>();
    const batch = await this.inner.measure(kernel, workload, schedules, {
      ...opts, onResult: (r, i) => { this.write(kernel, workload, r, 'measure'); written.add(i); opts.onResult?.(r, i); },
    });
    batch.results.forEach((r, i) => { if (!written.has(i)) this.write(kernel, workload, r, 'measure'); });
    this.count += schedules.length;
    return batch;
  }

  async retime(kernel: string, workload: Workload, schedules: Schedule[]): Promise<Batch> {
    const batch = await this.inner.retime(kernel, workload, schedules);
    for (const r of batch.results) this.write(kernel, workload, r, 'retime');
    return batch;
  }
}

/** The strategies that search without our cost model (they rank with none, or with their own). */
const BASELINES: Partial<Record<StrategyName, () => Strategy>> = {
  random: () => randomSearch, grid: () => gridSearch, autotvm64: () => autotvm(64), autotvm8: () => autotvm(8),
};

export function strategyFor(name: StrategyName): Strategy {
  return BASELINES[name]?.() ?? guided({ name });
}

async function loadPretrained(warn: (m: string) => void): Promise<CostModel | null> {
  if (!existsSync(PRETRAINED_PATH)) {
    warn(`no pre-trained cost model at ${PRETRAINED_PATH} (npm run bench:tuner writes it); the model starts from scratch`);
    return null;
  }
  try {
    const { CostModel } = await import('./cost-model.js');
    return await CostModel.load(PRETRAINED_PATH);
  } catch (e) {
    warn(`cannot read the pre-trained cost model (${(e as Error).message}); the model starts from scratch`);
    return null;
  }
}

function recordsOnly(space: Space, workload: Workload, recs: TuneRecord[], base: Base, unfinished: number): TuneSummary {
  const exact = exactHit(recs, workload);
  if (exact) {
    return { ...base, ...NOTHING_MEASURED, schedule: exact.schedule, source: 'exact-record', best_s: exact.median_s,
      notes: [...base.notes, `exact record of this workload on this target (${exact.measurements} schedule(s) measured earlier, the best re-timed against the default); nothing measured`] };
  }
  const stopped = unfinished ? [`a stopped run of this workload left ${unfinished} measurement(s); a budget above 0 resumes it`] : [];
  const near = nearestPriors(recs, space, workload, 1);
  if (near.length) {
    return { ...base, ...NOTHING_MEASURED, schedule: near[0], source: 'nearest-record',
      notes: [...base.notes, ...stopped, 'budget 0: the best schedule of the nearest recorded workload, legalised for this one (not measured here)'] };
  }
  return { ...base, ...NOTHING_MEASURED, schedule: space.defaultAt(workload), source: 'default',
    notes: [...base.notes, ...stopped, 'budget 0 and no record of this kernel on this target: the default schedule (nothing measured)'] };
}

/** What a stopped run of this workload measured, one trial per schedule (a schedule that failed
 *  once is failed): the resumed search counts them as measured. */
function stoppedTrials(records: TuneRecord[]): Trial[] {
  const failed = new Map<string, TuneRecord>();
  for (const r of records) if (r.source === 'measure' && r.status !== 'ok') failed.set(scheduleKey(r.schedule), r);
  const trials: Trial[] = [...failed.values()].map((r) => ({ schedule: r.schedule, status: r.status, median_s: null, compile_s: 0, run_s: 0 }));
  const ok = medianBySchedule(records.filter((r) => r.source === 'measure' && !failed.has(scheduleKey(r.schedule))));
  for (const v of ok.values()) trials.push({ schedule: v.schedule, status: 'ok', median_s: v.median_s, compile_s: 0, run_s: 0 });
  return trials;
}

/** This target's records of the kernel, each checked against the kernel's space: a schedule the
 *  space does not allow at its workload is never used (one warning per record, naming FILE:LINE). */
function usableRecords(records: TuneRecord[], space: Space, warn: (m: string) => void, store: RecordStore): TuneRecord[] {
  return records.filter((r) => {
    if (space.legal(r.schedule, r.workload)) return true;
    warn(`${recordPlace(r) ?? store.path}: record of ${r.kernel} with schedule ${JSON.stringify(r.schedule)}, which is not legal in its space at ${JSON.stringify(r.workload)}; skipped`);
    return false;
  });
}

export async function tuneWorkload(opts: TuneOptions): Promise<TuneSummary> {
  const t0 = performance.now();
  const warn = opts.warn ?? ((m: string) => process.stderr.write(`adopt: ${m}\n`));
  const reg = opts.registry ?? loadRegistry();
  const device = opts.device ?? 'cpu';
  const info = opts.targetInfo ?? localTargetInfo(undefined, device);
  const space = kernelSpace(opts.kernel, reg, device, info.target.flags);
  const dtype = String(opts.workload.dtype ?? 'float32');
  const templates = info.templates[opts.kernel] ?? {};
  const template = templates[dtype] ?? 'unknown';
  const store = new RecordStore(opts.db, warn);
  const all = store.readAll().records.filter((r) => r.kernel === opts.kernel);
  const recs = usableRecords(all.filter((r) => r.target === info.target.key && r.template === template), space, warn, store);
  const notes: string[] = [];
  const foreign = all.filter((r) => r.target !== info.target.key).length;
  if (foreign) notes.push(`${foreign} record(s) of ${opts.kernel} from other targets ignored`);
  const others = all.filter((r) => r.target === info.target.key && r.template !== template);
  // a record of another dtype carries that dtype's template: current there, just not this workload's
  const otherDtype = others.filter((r) => String(r.workload.dtype ?? 'float32') !== dtype && templates[String(r.workload.dtype ?? 'float32')] === r.template);
  if (otherDtype.length) notes.push(`${otherDtype.length} record(s) of ${opts.kernel} in ${[...new Set(otherDtype.map((r) => String(r.workload.dtype ?? 'float32')))].join(', ')}: another dtype than ${dtype}, not used for it`);
  const stale = others.length - otherDtype.length;
  if (stale) notes.push(`${stale} record(s) of an older template of ${opts.kernel} ignored`);
  const base: Base = { kernel: opts.kernel, workload: opts.workload, target: info.target.key, template, strategy: opts.strategy ?? 'auto', seconds: 0, notes, db: store.path };
  const finish = (s: TuneSummary): TuneSummary => ({ ...s, seconds: (performance.now() - t0) / 1000 });
  const hit = exactHit(recs, opts.workload);
  const here = recs.filter((r) => workloadKey(r.workload) === workloadKey(opts.workload));
  // no finished run here: whatever a stopped one measured is kept, and the search goes on from it
  const earlier = hit || opts.force ? [] : stoppedTrials(here);
  // a run that failed at every schedule (a broken compiler) was not stopped: it is measured again
  const allFailed = earlier.length > 0 && earlier.every((t) => t.status !== 'ok');
  if (allFailed) notes.push(`an earlier run of this workload failed at every schedule it measured (${earlier.length}); they are measured again`);
  const done = allFailed ? [] : earlier;
  if (opts.budget <= 0 || (!opts.force && hit)) return finish(recordsOnly(space, opts.workload, recs, base, done.length));
  if (done.length) notes.push(`resumed a stopped run of this workload: ${done.length} schedule(s) it measured count as measured`);

  let name: StrategyName = opts.strategy ?? 'auto';
  // auto: the schedules best on average over this target's recorded workloads of the kernel (robust
  // to one noisy median); nearest: the best of the nearest recorded workloads
  const priors = name === 'auto' ? consensusPriors(recs, space, opts.workload, 4)
    : name === 'nearest' || name === 'diffusion' ? nearestPriors(recs, space, opts.workload, 4) : [];
  if (name === 'diffusion') notes.push('diffusion needs a group of workloads; for one workload it is nearest-workload reuse');
  if (name === 'auto') name = priors.length ? 'nearest' : 'guided';
  const usesModel = !BASELINES[name];
  const given = !usesModel ? null : opts.model !== undefined ? opts.model : opts.pretrained === false ? null : await loadPretrained(warn);
  let adapted: { model: CostModel; groups: number } | null = null;
  try {
    // a model pre-trained on other machines ranks this one's schedules poorly; this target's
    // records of the kernel (the workloads tuned before) adapt it first (bench:tuner --transfer)
    adapted = given && recs.length ? await adaptToTarget(given, recs, new Map([[info.target.key, info.target]]), { seed: opts.seed ?? 0 }) : null;
    if (adapted?.groups) notes.push(`cost model adapted to this target on its records of ${adapted.groups} workload(s)`);
    const model = adapted?.groups ? adapted.model : given;
    const measurer = new RecordingMeasurer(opts.measurer ?? new LocalMeasurer({ device }), store, { template, target: info.target });
    const task = { kernel: opts.kernel, workload: opts.workload, space, target: info.target };
    const outcome: Outcome = await strategyFor(name).run(task, {
      measurer, budget: opts.budget, seed: opts.seed ?? 0, model, priors, done, onTrial: opts.onTrial,
    });
    return finish(await settle(measurer, task, outcome, { ...base, strategy: name }, done.length));
  } finally {
    adapted?.model.dispose();
    if (opts.model === undefined) given?.dispose();
  }
}

/** Re-times the top three and the default interleaved and picks the winner from that. */
async function settle(measurer: RecordingMeasurer, task: { kernel: string; workload: Workload; space: Space }, outcome: Outcome,
  base: Base, resumed: number): Promise<TuneSummary> {
  const ok = outcome.trials.filter((t) => t.status === 'ok' && t.median_s !== null).sort((a, b) => (a.median_s as number) - (b.median_s as number));
  const finalists: Schedule[] = ok.slice(0, 3).map((t) => t.schedule);
  const def = task.space.defaultAt(task.workload);
  if (!finalists.some((s) => sameSchedule(s, def))) finalists.push(def);
  let retimed: Batch | null = null;
  try {
    retimed = await measurer.retime(task.kernel, task.workload, finalists);
  } catch (e) {
    if (e instanceof MeasurerError && e.harness) throw e;
    base.notes.push(`re-timing the finalists failed (${(e as Error).message}); the batch medians decide, and the next run of this workload re-times them`);
  }
  const times = new Map<string, number>();
  for (const r of retimed?.results ?? []) if (r.status === 'ok' && r.median_s !== null) times.set(scheduleKey(r.schedule), r.median_s);
  if (!times.size) for (const t of ok) times.set(scheduleKey(t.schedule), t.median_s as number);
  const failedKeys = new Set(outcome.trials.filter((t) => t.status !== 'ok').map((t) => scheduleKey(t.schedule)));
  for (const r of retimed?.results ?? []) if (r.status !== 'ok') failedKeys.add(scheduleKey(r.schedule));
  const okKeys = new Set([...ok.map((t) => scheduleKey(t.schedule)), ...times.keys()].filter((k) => !failedKeys.has(k)));
  const candidates = [...times.entries()].filter(([k]) => !failedKeys.has(k)).sort((a, b) => a[1] - b[1]);
  const best = bestTrial(outcome.trials.filter((t) => !failedKeys.has(scheduleKey(t.schedule))));
  const chosen = candidates.length ? finalists.find((s) => scheduleKey(s) === candidates[0][0]) ?? best?.schedule ?? def : def;
  const defaultS = failedKeys.has(scheduleKey(def)) ? null : times.get(scheduleKey(def)) ?? null;
  const bestS = times.get(scheduleKey(chosen)) ?? best?.median_s ?? null;
  if (!okKeys.size) base.notes.push('no schedule ran correctly, the default included; the default schedule is kept');
  return {
    ...base, schedule: chosen, source: okKeys.size ? 'measured' : 'default',
    measurements: outcome.trials.length - resumed, resumed, retimed: retimed?.results.length ?? 0,
    default_s: defaultS, best_s: bestS, speedup: defaultS && bestS ? defaultS / bestS : null, failures: failedKeys.size, ok: okKeys.size,
  };
}
