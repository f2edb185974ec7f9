// `npm run bench:tuner -- --transfer DIR`: the tuner on a target its cost model never saw.
// The model is pre-trained on the shipped replay data (other machines) and the strategies search
// DIR's spaces, measured exhaustively on the new target: no model, the other target's model as it
// is (zero-shot), the same model fine-tuned on this target's measurements as the search goes
// (few-shot), the same model adapted first on the new target's records of the kernel: every
// schedule of its other workloads, or only what one earlier 16-measurement tuning run of the
// nearest workload measured (what `adopt tune` has on a new machine), and, as a reference, models
// pre-trained on the new target's other workloads alone, with and without their records as reuse
// priors. It also scores the cost model itself on every workload of the new target:
// the other target's model as it is, after fine-tuning on 8 random measurements of the workload,
// and the new target's own held-out model.
import { CostModel, kendallTau } from '../tune/cost-model.js';
import { featurize } from '../tune/features.js';
import type { Target } from '../tune/measurer.js';
import { adaptToTarget, catalogOf, pretrain } from '../tune/pretrain.js';
import type { TuneRecord } from '../tune/records.js';
import { type ReplayEntry, ReplayMeasurer, type ReplaySpace, replayRecords } from '../tune/replay.js';
import { Rng } from '../tune/rng.js';
import { autotvm, randomSearch } from '../tune/strategies/baselines.js';
import { guided } from '../tune/strategies/guided.js';
import { consensusPriors, workloadDistance } from '../tune/strategies/reuse.js';
import type { Context, Strategy, Task, Trial } from '../tune/strategies/types.js';
import { CHECKPOINTS, Tally, doneAt, fmt, mean } from './tuner-tally.js';
import { scheduleKey } from '../tune/space.js';
import { type ModelLocation, modelLocation } from './tuner-models.js';

/** Few-shot: measurements of a workload the other target's model is fine-tuned on before it is scored. */
export const FEW_SHOT = 8;

export interface TransferScore { kernel: string; workload: number; zero_shot: number; few_shot: number; own: number }

interface Models { source: CostModel; folds: CostModel[] }

export interface TransferOptions {
  sourceDir: string;
  targetDir: string;
  /** Every kernel each directory holds (before `--kernels`): a run on fewer keeps its models in the cache, never over the shipped ones. */
  sourceKernels: string[];
  targetKernels: string[];
  seeds: number;
}

/** Where the pre-trained model of the other machines and the new target's fold models are kept. */
export function transferModelLocations(opts: TransferOptions, chosen: string[]): { source: ModelLocation; own: ModelLocation } {
  return { source: modelLocation(opts.sourceDir, opts.sourceKernels, chosen), own: modelLocation(opts.targetDir, opts.targetKernels, chosen) };
}

/** Pre-trains (or loads) the other target's model on all its records and the new target's leave-one-workload-out models. */
async function models(source: ReplaySpace[], target: ReplaySpace[], opts: TransferOptions): Promise<Models> {
  const targets = new Map<string, Target>([...source, ...target].map((s) => [s.target.key, s.target]));
  const kernels = target.map((s) => s.kernel);
  const { source: src, own } = transferModelLocations(opts, kernels);
  const full = await pretrain(catalogOf(source), source.filter((s) => kernels.includes(s.kernel)).flatMap((s) => replayRecords(s)), targets, { cachePath: src.pretrained, seed: 0 });
  const folds: CostModel[] = [];
  const count = Math.max(...target.map((s) => s.workloads.length));
  for (let f = 0; f < count; f++) {
    const recs = target.flatMap((s) => replayRecords(s, (_w, i) => i !== f));
    folds.push((await pretrain(catalogOf(target), recs, targets, { cachePath: `${own.dir}/fold-${f}.json`, seed: 0 })).model);
  }
  return { source: full.model, folds };
}

/** Kendall tau of a model's ranking of some of a workload's measured schedules (all that ran, by default) against their times. */
function tau(model: CostModel, s: ReplaySpace, wi: number, only?: ReplayEntry[]): number {
  const w = s.workloads[wi];
  const ok = only ?? [...w.results.values()].filter((e) => e.status === 'ok' && e.median_s !== null);
  const pred = model.predict(ok.map((e) => featurize(model.features, s.kernel, w.workload, e.schedule, s.target)));
  return kendallTau(pred, ok.map((e) => -Math.log2(e.median_s as number)));
}

/** The other target's model fine-tuned on `FEW_SHOT` random measurements of the workload (as the guided search fine-tunes after a batch), then scored on the rest. */
async function fewShot(source: CostModel, s: ReplaySpace, wi: number, seed: number): Promise<number> {
  const w = s.workloads[wi];
  const ok = new Rng(seed).shuffle([...w.results.values()].filter((e) => e.status === 'ok' && e.median_s !== null));
  const shots = ok.slice(0, FEW_SHOT);
  const m = await source.clone();
  try {
    m.train([{ x: shots.map((e) => featurize(m.features, s.kernel, w.workload, e.schedule, s.target)), y: shots.map((e) => -Math.log2(e.median_s as number)) }], { steps: 3, lr: 3e-3, seed });
    return tau(m, s, wi, ok.slice(FEW_SHOT));
  } finally {
    m.dispose();
  }
}

export async function modelScores(target: ReplaySpace[], m: Models, seeds: number): Promise<TransferScore[]> {
  const out: TransferScore[] = [];
  for (const s of target) {
    for (let wi = 0; wi < s.workloads.length; wi++) {
      const few: number[] = [];
      for (let seed = 0; seed < seeds; seed++) few.push(await fewShot(m.source, s, wi, seed * 7919 + wi));
      out.push({ kernel: s.kernel, workload: wi, zero_shot: tau(m.source, s, wi), few_shot: few.reduce((a, b) => a + b, 0) / few.length, own: tau(m.folds[wi % m.folds.length], s, wi) });
    }
  }
  return out;
}

/** The models adapted for one workload: on every record of the kernel's other workloads, and on what one earlier tuning run of the nearest one measured. */
interface Adapted { all: CostModel; earlier: CostModel }

interface TransferVariant { name: string; strategy: Strategy; ctx: (m: Models, reuse: TuneRecord[], task: Task, wi: number, adapted: Adapted) => Partial<Context> }

function transferVariants(): TransferVariant[] {
  const g = guided();
  return [
    { name: 'random', strategy: randomSearch, ctx: () => ({}) },
    { name: 'autotvm8', strategy: autotvm(8), ctx: () => ({}) },
    { name: 'no_model', strategy: g, ctx: () => ({ model: null }) },
    { name: 'other_target_zero_shot', strategy: g, ctx: (m) => ({ model: m.source, finetune: false }) },
    { name: 'other_target_few_shot', strategy: g, ctx: (m) => ({ model: m.source }) },
    // adapted first on this target's records of the kernel: every schedule of its other workloads
    // (an upper bound), and what `adopt tune` has after tuning one other workload first: the
    // EARLIER_BUDGET schedules that run measured
    { name: 'other_target_adapted_all', strategy: g, ctx: (_m, _r, _t, _wi, a) => ({ model: a.all }) },
    { name: 'other_target_adapted_earlier', strategy: g, ctx: (_m, _r, _t, _wi, a) => ({ model: a.earlier }) },
    { name: 'this_target', strategy: g, ctx: (m, _r, _t, wi) => ({ model: m.folds[wi % m.folds.length] }) },
    { name: 'this_target_with_reuse', strategy: g, ctx: (m, reuse, t, wi) => ({ model: m.folds[wi % m.folds.length], priors: consensusPriors(reuse, t.space, t.workload, 4) }) },
  ];
}

/** Measurements of the earlier tuning run `adopt tune` would have made on a new machine. */
export const EARLIER_BUDGET = 16;

/** The records of one guided run with the other machines' model, `EARLIER_BUDGET` measurements, on the workload nearest to `wi`. */
async function earlierRun(s: ReplaySpace, wi: number, source: CostModel, measurer: ReplayMeasurer): Promise<TuneRecord[]> {
  const w = s.workloads[wi].workload;
  const others = s.workloads.map((x, i) => ({ i, d: workloadDistance(w, x.workload) })).filter((x) => x.i !== wi).sort((a, b) => a.d - b.d);
  if (!others.length) return [];
  const o = await guided().run({ kernel: s.kernel, workload: s.workloads[others[0].i].workload, space: s.space, target: s.target }, { measurer, budget: EARLIER_BUDGET, seed: wi, model: source });
  // replay answered each measurement from its records: keep those it was asked for
  const measured = new Set(o.trials.map((t) => scheduleKey(t.schedule)));
  return replayRecords(s, (_x, i) => i === others[0].i).filter((r) => measured.has(scheduleKey(r.schedule)));
}

export async function runTransfer(source: ReplaySpace[], target: ReplaySpace[], opts: TransferOptions): Promise<Record<string, unknown>> {
  const out = process.stdout;
  const t0 = performance.now();
  const unknown = target.filter((s) => !source.some((x) => x.kernel === s.kernel)).map((s) => s.kernel);
  if (unknown.length) throw new Error(`--transfer: no replay data of ${unknown.join(', ')} in ${opts.sourceDir} to pre-train on`);
  // the model has seen every machine of the pre-training data, whichever kernel it measured there
  const seen = new Set(source.map((s) => s.target.key));
  const same = target.filter((s) => seen.has(s.target.key)).map((s) => s.kernel);
  if (same.length) throw new Error(`--transfer: ${same.join(', ')} in ${opts.targetDir} was measured on a target of ${opts.sourceDir} (${target[0].target.key}); transfer needs another machine's data`);
  const m = await models(source, target, opts);
  out.write(`transfer: cost model pre-trained on ${[...new Set(source.map((s) => `${s.target.cpu ?? '?'} (${s.target.key})`))].join(', ')}; `
    + `searching ${target.map((s) => `${s.kernel} ${s.space.size}`).join(', ')} schedules measured on ${target[0].target.cpu ?? '?'} (${target[0].target.key}), ${opts.seeds} seeds\n`);
  const scores = await modelScores(target, m, Math.min(opts.seeds, 10));
  out.write(`\ncost model on the new target (Kendall tau over each workload's schedules, mean over ${scores.length} kernel x workload):\n`);
  out.write(`  ${'kernel'.padEnd(18)} ${'zero-shot'.padStart(10)} ${`few-shot (${FEW_SHOT})`.padStart(14)} ${'own target'.padStart(11)}   (few-shot: fine-tuned on ${FEW_SHOT} random schedules, scored on the rest)\n`);
  for (const k of [...new Set(scores.map((x) => x.kernel)), null]) {
    const rows = scores.filter((x) => k === null || x.kernel === k);
    out.write(`  ${(k ?? 'all').padEnd(18)} ${fmt(mean(rows.map((r) => r.zero_shot)), 2).padStart(10)} ${fmt(mean(rows.map((r) => r.few_shot)), 2).padStart(14)} ${fmt(mean(rows.map((r) => r.own)), 2).padStart(11)}\n`);
  }

  const tally = new Tally();
  const measurer = new ReplayMeasurer(target);
  const targets = new Map<string, Target>(target.map((s) => [s.target.key, s.target]));
  const vs = transferVariants();
  for (const s of target) {
    for (let wi = 0; wi < s.workloads.length; wi++) {
      const w = s.workloads[wi];
      const task: Task = { kernel: s.kernel, workload: w.workload, space: s.space, target: s.target };
      const cap = s.space.enumerate(w.workload).length;
      const reuse = replayRecords(s, (_x, i) => i !== wi);
      const stop = (trials: Trial[]) => doneAt(trials, w.best_s);
      const adapted: Adapted = {
        all: (await adaptToTarget(m.source, reuse, targets)).model,
        earlier: (await adaptToTarget(m.source, await earlierRun(s, wi, m.source, measurer), targets)).model,
      };
      for (let seed = 0; seed < opts.seeds; seed++) {
        for (const v of vs) {
          const ctx: Context = { measurer, budget: cap, seed: seed * 7919 + wi, stop, ...v.ctx(m, reuse, task, wi, adapted) };
          tally.add(v.name, await v.strategy.run(task, ctx), w.best_s, cap);
        }
      }
      adapted.all.dispose();
      adapted.earlier.dispose();
    }
  }
  out.write(`\n${'strategy on the new target'.padEnd(30)} ${'runs'.padStart(5)} ${'n90'.padStart(5)} ${'n95'.padStart(5)} ${'n99'.padStart(5)}   ${CHECKPOINTS.map((c) => `@${c}`.padStart(6)).join(' ')}\n`);
  for (const v of vs) {
    const s = tally.summary(v.name);
    out.write(`${v.name.padEnd(30)} ${String(s.runs).padStart(5)} ${fmt(s.n90).padStart(5)} ${fmt(s.n95).padStart(5)} ${fmt(s.n99).padStart(5)}   ${CHECKPOINTS.map((c) => `${fmt(100 * s.after[c], 1).padStart(5)}%`).join(' ')}\n`);
  }
  out.write('  nXX: median measurements to reach XX% of the new target\'s optimum; @N: mean % of it after N measurements\n');
  m.source.dispose();
  for (const f of m.folds) f.dispose();
  const n95 = Object.fromEntries(vs.map((v) => [v.name, tally.summary(v.name).n95]));
  const n99 = Object.fromEntries(vs.map((v) => [v.name, tally.summary(v.name).n99]));
  return {
    bench: 'tuner', mode: 'transfer', seeds: opts.seeds, source_targets: [...new Set(source.map((s) => s.target.key))], target: target[0].target.key, kernels: target.map((s) => s.kernel),
    n95, n99, random_over_few_shot: n95.random / n95.other_target_few_shot, random_over_few_shot_n99: n99.random / n99.other_target_few_shot,
    random_over_adapted_earlier: n95.random / n95.other_target_adapted_earlier, random_over_adapted_earlier_n99: n99.random / n99.other_target_adapted_earlier,
    tau: { zero_shot: mean(scores.map((r) => r.zero_shot)), few_shot: mean(scores.map((r) => r.few_shot)), own_target: mean(scores.map((r) => r.own)), few_shot_measurements: FEW_SHOT },
    per_workload: scores, seconds: (performance.now() - t0) / 1000,
  };
}
