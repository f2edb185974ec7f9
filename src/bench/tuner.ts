// `npm run bench:tuner`: the tuner's strategies compared on replayed, exhaustively measured spaces
// (fixtures/tuning/replay/), medians over seeds; `-- --live` also tunes two kernels live; `-- --transfer DIR`
// searches DIR's spaces, measured on another machine, with the model pre-trained here (tuner-transfer.ts).
//
// For each kernel and workload, every strategy searches until replay says it measured the optimum,
// or holds 99% of it after 64 measurements (after which nothing it reports can change), and we read off the measurements it took to reach
// 90/95/99% of the optimum (optimum time / best time so far), the fraction of the optimum reached
// after 8/16/32/64 measurements, and the wall time it would have cost live (compile and run, from
// the recorded measurements) and did cost here (model and search). The cost model is pre-trained
// leaving one workload out (fold f: every kernel's f-th workload held out), so a strategy never
// sees its own workload's data before measuring; "with reuse" adds the records of the kernel's
// other workloads on this target as a reuse database (priors: the schedules best on average over
// them; nearest_reuse: the best of the nearest workloads). Ends with one JSON line.
import { mkdirSync } from 'node:fs';
import { type CostModel, backendInfo, kendallTau, loadTf, topKRecall } from '../tune/cost-model.js';
import { featurize } from '../tune/features.js';
import { LocalMeasurer, type Measurer, type Target } from '../tune/measurer.js';
import { REPLAY_DIR, catalogOf, pretrain } from '../tune/pretrain.js';
import type { TuneRecord } from '../tune/records.js';
import { modelLocation } from './tuner-models.js';
import { runTransfer } from './tuner-transfer.js';
import { ReplayMeasurer, type ReplaySpace, loadReplayDir, replayRecords } from '../tune/replay.js';
import { formatSpaceStats, spaceStats } from '../tune/space-stats.js';
import { autotvm, gridSearch, randomSearch } from '../tune/strategies/baselines.js';
import { diffuse } from '../tune/strategies/diffusion.js';
import { guided } from '../tune/strategies/guided.js';
import { consensusPriors, nearestPriors } from '../tune/strategies/reuse.js';
import { type Context, type Outcome, type Strategy, type Task, type Trial } from '../tune/strategies/types.js';
import { type Schedule, scheduleKey } from '../tune/space.js';
import { CHECKPOINTS, type Sink, Tally, doneAt, fmt, mean, median } from './tuner-tally.js';

export { Tally, doneAt, median, reachAt } from './tuner-tally.js';

interface Args { transfer: string | null; live: boolean; seeds: number; ablationSeeds: number; kernels: string[] | null; quick: boolean; spacesOnly: boolean; replay: string; liveOnly: boolean; liveKernels: string[] | null; cap: number }

function parseArgs(argv: string[]): Args {
  const a: Args = { transfer: null, live: false, seeds: 30, ablationSeeds: 10, kernels: null, quick: false, spacesOnly: false, replay: REPLAY_DIR, liveOnly: false, liveKernels: null, cap: Infinity };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--live') a.live = true;
    else if (argv[i] === '--transfer') a.transfer = argv[++i];
    else if (argv[i] === '--quick') a.quick = true;
    else if (argv[i] === '--spaces') a.spacesOnly = true;
    else if (argv[i] === '--replay') a.replay = argv[++i];
    else if (argv[i] === '--live-only') a.live = a.liveOnly = true;
    else if (argv[i] === '--live-kernels') a.liveKernels = argv[++i].split(',');
    else if (argv[i] === '--cap') a.cap = Number(argv[++i]);
    else if (argv[i] === '--seeds') a.seeds = Number(argv[++i]);
    else if (argv[i] === '--ablation-seeds') a.ablationSeeds = Number(argv[++i]);
    else if (argv[i] === '--kernels') a.kernels = argv[++i].split(',');
  }
  return a;
}


export interface Fold { model: CostModel; cached: boolean; seconds: number }

async function pretrainFolds(spaces: ReplaySpace[], folds: number, targets: Map<string, Target>, modelDir: string): Promise<Fold[]> {
  const catalog = catalogOf(spaces);
  const out: Fold[] = [];
  mkdirSync(modelDir, { recursive: true });
  for (let f = 0; f < folds; f++) {
    const recs = spaces.flatMap((s) => replayRecords(s, (_w, i) => i !== f));
    out.push(await pretrain(catalog, recs, targets, { cachePath: `${modelDir}/fold-${f}.json`, seed: 0 }));
  }
  return out;
}

/** Kendall tau and top-5 recall of each fold's model on the workloads it held out. */
function evaluateModel(spaces: ReplaySpace[], folds: Fold[]): { tau: number; recall5: number; per: { kernel: string; fold: number; tau: number; recall5: number }[] } {
  const per: { kernel: string; fold: number; tau: number; recall5: number }[] = [];
  for (const s of spaces) {
    s.workloads.forEach((w, f) => {
      if (f >= folds.length) return;
      const ok = [...w.results.values()].filter((e) => e.status === 'ok' && e.median_s !== null);
      const model = folds[f].model;
      const pred = model.predict(ok.map((e) => featurize(model.features, s.kernel, w.workload, e.schedule, s.target)));
      const truth = ok.map((e) => -Math.log2(e.median_s as number));
      per.push({ kernel: s.kernel, fold: f, tau: kendallTau(pred, truth), recall5: topKRecall(pred, truth, 5) });
    });
  }
  return { tau: mean(per.map((p) => p.tau)), recall5: mean(per.map((p) => p.recall5)), per };
}

/** `zero`: what the variant would ship before its first measurement: its first prior where it has priors, else the default (`adopt tune --budget 0` ships the nearest record, else the default). */
interface Variant { name: string; strategy: Strategy; ctx: (fold: Fold, reuse: TuneRecord[], task: Task) => Partial<Context>; ablation?: boolean; zero: ZeroPick }

function variants(): Variant[] {
  const g = guided();
  return [
    { name: 'random', strategy: randomSearch, ctx: () => ({}), zero: 'default' },
    { name: 'grid', strategy: gridSearch, ctx: () => ({}), zero: 'default' },
    { name: 'autotvm64', strategy: autotvm(64), ctx: () => ({}), zero: 'default' },
    { name: 'autotvm8', strategy: autotvm(8), ctx: () => ({}), zero: 'default' },
    { name: 'ours', strategy: g, ctx: (f) => ({ model: f.model }), zero: 'default' },
    { name: 'ours_with_reuse', strategy: g, ctx: (f, reuse, t) => ({ model: f.model, priors: consensusPriors(reuse, t.space, t.workload, 4) }), zero: 'consensus_record' },
    { name: 'nearest_reuse', strategy: g, ctx: (f, reuse, t) => ({ model: f.model, priors: nearestPriors(reuse, t.space, t.workload, 4) }), zero: 'nearest_record' },
    { name: 'ablation_no_pretraining', strategy: g, ctx: () => ({ model: null }), ablation: true, zero: 'default' },
    { name: 'ablation_no_finetuning', strategy: g, ctx: (f) => ({ model: f.model, finetune: false }), ablation: true, zero: 'default' },
  ];
}

/** `maxRun`: measurements a replayed run may make (--cap; the whole space by default); nXX beyond it is reported as cap + 1. */
async function runReplay(spaces: ReplaySpace[], folds: Fold[], zeros: Record<ZeroPick, number>[][], seeds: number, ablationSeeds: number, tally: Tally, maxRun: number): Promise<Record<string, Record<string, number>>> {
  const perKernel: Record<string, Record<string, number>> = {};
  const measurer = new ReplayMeasurer(spaces);
  const vs = variants();
  for (const [si, s] of spaces.entries()) {
    const kernelTally = new Tally(); // this kernel's alone, printed as soon as it is done
    const both: Sink = { add: (...a) => { tally.add(...a); kernelTally.add(...a); } };
    const tasks: Task[] = s.workloads.map((w) => ({ kernel: s.kernel, workload: w.workload, space: s.space, target: s.target }));
    for (let wi = 0; wi < s.workloads.length; wi++) {
      const w = s.workloads[wi];
      const cap = Math.min(maxRun, s.space.enumerate(w.workload).length);
      const reuse = replayRecords(s, (_x, i) => i !== wi);
      const stop = (trials: Trial[]) => doneAt(trials, w.best_s);
      const zero = zeros[si][wi];
      let grid: Outcome | null = null; // grid search is deterministic: one run stands for every seed
      for (let seed = 0; seed < seeds; seed++) {
        for (const v of vs) {
          if (v.ablation && seed >= ablationSeeds) continue;
          const ctx: Context = { measurer, budget: cap, seed: seed * 7919 + wi, stop, ...v.ctx(folds[wi % folds.length], reuse, tasks[wi]) };
          const o: Outcome = v.name === 'grid' && grid ? grid : await v.strategy.run(tasks[wi], ctx);
          if (v.name === 'grid') grid = o;
          both.add(v.name, o, w.best_s, cap, zero[v.zero]);
        }
      }
    }
    await runDiffusion(s, tasks, folds, ablationSeeds, measurer, both, maxRun);
    const shown = ['random', 'autotvm64', 'autotvm8', 'ours', 'ours_with_reuse', 'diffusion'];
    perKernel[s.kernel] = Object.fromEntries(shown.map((n) => [n, kernelTally.summary(n).n95]));
    const n99 = shown.map((n) => `${n} ${fmt(kernelTally.summary(n).n99)}`);
    process.stdout.write(`  ${s.kernel}: n95 ${shown.map((n) => `${n} ${fmt(perKernel[s.kernel][n])}`).join(', ')}\n  ${''.padEnd(s.kernel.length)}  n99 ${n99.join(', ')}\n`);
  }
  return perKernel;
}

/** Diffusion over a kernel's workloads: the representative tuned with 16 measurements, the rest from its priors. */
async function runDiffusion(s: ReplaySpace, tasks: Task[], folds: Fold[], seeds: number, measurer: Measurer, tally: Sink, maxRun: number): Promise<void> {
  for (let seed = 0; seed < seeds; seed++) {
    const stopFor = (i: number) => (trials: Trial[]) => doneAt(trials, s.workloads[i].best_s);
    const res = await diffuse(tasks, { measurer, budget: 64, seed: seed * 7919 }, {
      reps: 1, repBudget: 16, topK: 4,
      contextFor: (i) => ({ model: folds[i % folds.length].model, stop: stopFor(i), budget: Math.min(maxRun, s.space.enumerate(tasks[i].workload).length), seed: seed * 7919 + i }),
    });
    res.outcomes.forEach((o, i) => {
      const cap = Math.min(maxRun, s.space.enumerate(tasks[i].workload).length);
      if (!res.representative[i]) tally.add('diffusion', o, s.workloads[i].best_s, cap);
      else tally.add('diffusion_representative', o, s.workloads[i].best_s, cap);
    });
  }
}

/**
 * What the tuner would ship with no measurement at all, as a fraction of the optimum (replay's
 * time of the pick), per space and workload: the default schedule (what a search ships when
 * nothing it measured beats it), the best schedule of the nearest recorded workload (`adopt tune
 * --budget 0`), the consensus prior (the first schedule reuse measures) and the cost model's top
 * prediction (its fold never saw this workload). The reuse picks see only the kernel's other
 * workloads.
 */
export function zeroPicks(spaces: ReplaySpace[], folds: Fold[]): Record<ZeroPick, number>[][] {
  return spaces.map((s) => s.workloads.map((_w, wi) => zeroPicksAt(s, wi, folds)));
}

/** Each pick's fractions over every space and workload. */
export function zeroMeasurementPicks(grid: Record<ZeroPick, number>[][]): Record<ZeroPick, number[]> {
  const cells = grid.flat();
  return Object.fromEntries(ZERO_PICKS.map((k) => [k, cells.map((z) => z[k])])) as Record<ZeroPick, number[]>;
}

const ZERO_PICKS = ['default', 'nearest_record', 'consensus_record', 'model_top'] as const;
type ZeroPick = typeof ZERO_PICKS[number];

/** The zero-measurement picks on one workload of a space, as fractions of its optimum (0 where replay lacks the pick). */
function zeroPicksAt(s: ReplaySpace, wi: number, folds: Fold[]): Record<ZeroPick, number> {
  const w = s.workloads[wi];
  const fraction = (pick: Schedule | undefined): number => {
    const e = pick && w.results.get(scheduleKey(pick));
    return e && e.status === 'ok' && e.median_s ? w.best_s / e.median_s : 0;
  };
  const reuse = replayRecords(s, (_x, i) => i !== wi);
  const legal = s.space.enumerate(w.workload);
  const model = folds[wi % folds.length].model;
  const scores = model.predict(legal.map((c) => featurize(model.features, s.kernel, w.workload, c, s.target)));
  return {
    default: fraction(s.space.defaultAt(w.workload)),
    nearest_record: fraction(nearestPriors(reuse, s.space, w.workload, 1)[0]),
    consensus_record: fraction(consensusPriors(reuse, s.space, w.workload, 1)[0]),
    model_top: fraction(legal[scores.indexOf(Math.max(...scores))]),
  };
}

function summariseZero(picks: Record<string, number[]>): Record<string, { mean: number; median: number; share90: number; share95: number; share99: number }> {
  const share = (xs: number[], f: number) => xs.filter((x) => x >= f - 1e-12).length / Math.max(1, xs.length);
  return Object.fromEntries(Object.entries(picks).map(([k, xs]) => [k, {
    mean: mean(xs), median: median(xs), share90: share(xs, 0.9), share95: share(xs, 0.95), share99: share(xs, 0.99),
  }]));
}

/** Live confirmation: guided against random on two kernels' first workload (`--live-kernels`, else the first two), 16 measurements each. */
async function runLive(spaces: ReplaySpace[], folds: Fold[], kernels: string[] | null): Promise<Record<string, unknown>[]> {
  const out: Record<string, unknown>[] = [];
  // one thread and CPU time, as the replay data was taken
  const measurer = new LocalMeasurer({ repeats: 3, threads: 1, clock: 'cpu' });
  const chosen = kernels ? spaces.filter((s) => kernels.includes(s.kernel)) : spaces.slice(0, 2);
  for (const s of chosen) {
    const w = s.workloads[0];
    const task: Task = { kernel: s.kernel, workload: w.workload, space: s.space, target: s.target };
    for (const [name, strat, extra] of [['ours', guided(), { model: folds[0].model }], ['random', randomSearch, {}]] as const) {
      const t0 = performance.now();
      const o = await strat.run(task, { measurer, budget: 16, seed: 1, ...extra });
      const best = o.best?.median_s ?? null;
      const re = await measurer.retime(s.kernel, w.workload, [...(o.best ? [o.best.schedule] : []), { ...s.space.defaults }]);
      const [b, d] = [re.results[0]?.median_s ?? null, re.results[re.results.length - 1]?.median_s ?? null];
      out.push({ kernel: s.kernel, workload: w.workload, strategy: name, measurements: o.trials.length, best_ms: best && best * 1e3, retimed_best_ms: b && b * 1e3, retimed_default_ms: d && d * 1e3,
        speedup_over_default: b && d ? d / b : null, replay_optimum_ms: w.best_s * 1e3, wall_s: (performance.now() - t0) / 1000, timing: o.timing });
    }
  }
  return out;
}

function printTable(tally: Tally, names: string[]): void {
  const out = process.stdout;
  out.write(`\n${'strategy'.padEnd(26)} ${'runs'.padStart(5)} ${'n90'.padStart(5)} ${'n95'.padStart(5)} ${'n99'.padStart(5)}   ${CHECKPOINTS.map((c) => `@${c}`.padStart(6)).join(' ')}   ${'compile s'.padStart(9)} ${'run s'.padStart(7)} ${'model s'.padStart(8)} ${'search s'.padStart(8)}\n`);
  for (const n of names) {
    const s = tally.summary(n);
    if (!s.runs) continue;
    out.write(`${n.padEnd(26)} ${String(s.runs).padStart(5)} ${fmt(s.n90).padStart(5)} ${fmt(s.n95).padStart(5)} ${fmt(s.n99).padStart(5)}   ${CHECKPOINTS.map((c) => fmt(100 * s.after[c], 1).padStart(5) + '%').join(' ')}   `
      + `${fmt(s.timing.compile_s, 2).padStart(9)} ${fmt(s.timing.run_s, 2).padStart(7)} ${fmt(s.timing.model_s, 3).padStart(8)} ${fmt(s.timing.search_s, 4).padStart(8)}\n`);
  }
  out.write('  nXX: median measurements to reach XX% of the optimum (optimum time / best time so far); @N: mean % of the optimum after N measurements;\n'
    + '  compile/run s: what the measurements cost when recorded (mean per run, from the replay data); model/search s: spent here.\n');
  out.write(`\n${'counting what ships unmeasured'.padEnd(32)} ${'zero pick'.padEnd(17)} ${'n90'.padStart(5)} ${'n95'.padStart(5)} ${'n99'.padStart(5)}\n`);
  for (const v of variants()) {
    const s = tally.summary(v.name);
    if (!s.runs) continue;
    out.write(`${v.name.padEnd(32)} ${v.zero.padEnd(17)} ${fmt(s.shipped.n90).padStart(5)} ${fmt(s.shipped.n95).padStart(5)} ${fmt(s.shipped.n99).padStart(5)}\n`);
  }
  out.write('  as nXX, but 0 where the schedule a strategy ships before its first measurement already reaches XX% (a search ships the default;\n'
    + '  a reuse strategy its first prior: the consensus or the nearest record, the latter what `adopt tune --budget 0` ships); the table above\n'
    + '  counts measured schedules only, so never below 1. A median of 0 leaves no ratio to random: it says the median workload needs no measurement.\n');
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const t0 = performance.now();
  const loaded = loadReplayDir(args.replay);
  let spaces = loaded;
  for (const [flag, names] of [['--kernels', args.kernels], ['--live-kernels', args.liveKernels]] as const) {
    const unknown = (names ?? []).filter((k) => !loaded.some((s) => s.kernel === k));
    if (unknown.length) {
      process.stderr.write(`${flag}: no replay data for ${unknown.join(', ')} in ${args.replay} (there is: ${[...new Set(loaded.map((s) => s.kernel))].join(', ') || 'none'})\n`);
      return 2;
    }
  }
  if (args.kernels) spaces = spaces.filter((s) => args.kernels!.includes(s.kernel));
  if (!spaces.length) {
    process.stderr.write(`no replay data in ${args.replay}: run PYTHONPATH=native python3 -m adopt_harness.measure --exhaustive\n`);
    return 2;
  }
  if (args.transfer) {
    const targetLoaded = loadReplayDir(args.transfer);
    const target = args.kernels ? targetLoaded.filter((s) => args.kernels!.includes(s.kernel)) : targetLoaded;
    if (!target.length) {
      process.stderr.write(`--transfer: no replay data in ${args.transfer}: measure the new target with PYTHONPATH=native python3 -m adopt_harness.measure --exhaustive --out ${args.transfer}\n`);
      return 2;
    }
    const missing = (args.kernels ?? []).filter((k) => !targetLoaded.some((s) => s.kernel === k));
    if (missing.length) {
      process.stderr.write(`--kernels: no replay data for ${missing.join(', ')} in ${args.transfer}\n`);
      return 2;
    }
    const ignored = [args.live && '--live', Number.isFinite(args.cap) && '--cap', args.spacesOnly && '--spaces'].filter(Boolean);
    if (ignored.length) process.stderr.write(`--transfer: ${ignored.join(', ')} ignored (a transfer run replays the new target's spaces whole)\n`);
    await loadTf();
    process.stdout.write(`${formatSpaceStats(target.map(spaceStats))}\n`);
    const result = await runTransfer(spaces, target, {
      sourceDir: args.replay, targetDir: args.transfer, sourceKernels: loaded.map((s) => s.kernel), targetKernels: targetLoaded.map((s) => s.kernel), seeds: args.quick ? 5 : args.seeds,
    });
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return 0;
  }
  const stats = spaces.map(spaceStats);
  process.stdout.write(`${formatSpaceStats(stats)}\n`);
  if (args.spacesOnly) return 0;
  await loadTf();
  const seeds = args.quick ? 5 : args.seeds;
  const targets = new Map(spaces.map((s) => [s.target.key, s.target]));
  const foldCount = Math.max(...spaces.map((s) => s.workloads.length));
  process.stdout.write(`tuner benchmark: ${spaces.length} kernels x ${foldCount} workloads replayed (${spaces.map((s) => `${s.kernel} ${s.space.size}`).join(', ')} schedules), ${seeds} seeds; tfjs ${backendInfo().backend}${backendInfo().note ? ` (${backendInfo().note})` : ''}\n`);
  const tp = performance.now();
  const models = modelLocation(args.replay, loaded.map((s) => s.kernel), spaces.map((s) => s.kernel));
  const folds = await pretrainFolds(spaces, foldCount, targets, models.dir);
  const full = await pretrain(catalogOf(spaces), spaces.flatMap((s) => replayRecords(s)), targets, { cachePath: models.pretrained, seed: 0 });
  process.stdout.write(`pre-training: ${folds.filter((f) => f.cached).length + (full.cached ? 1 : 0)}/${folds.length + 1} models loaded from ${models.dir}, the rest trained (${fmt((performance.now() - tp) / 1000, 1)} s)\n`);
  const ev = evaluateModel(spaces, folds);
  process.stdout.write(`cost model on held-out workloads: Kendall tau ${fmt(ev.tau, 3)}, top-5 recall ${fmt(ev.recall5, 3)} (mean over ${ev.per.length} kernel x workload)\n`);
  for (const s of spaces) {
    const p = ev.per.filter((x) => x.kernel === s.kernel);
    process.stdout.write(`  ${s.kernel.padEnd(22)} tau ${p.map((x) => fmt(x.tau, 2)).join(' ')}   recall@5 ${p.map((x) => fmt(x.recall5, 1)).join(' ')}\n`);
  }
  if (args.liveOnly) {
    const live = await runLive(spaces, folds, args.liveKernels);
    for (const l of live) process.stdout.write(`live ${JSON.stringify(l)}\n`);
    process.stdout.write(`${JSON.stringify({ bench: 'tuner', mode: 'live', live, seconds: (performance.now() - t0) / 1000 })}\n`);
    return 0;
  }
  const tally = new Tally();
  const ablationSeeds = Math.min(seeds, args.ablationSeeds);
  const zeros = zeroPicks(spaces, folds);
  const n95PerKernel = await runReplay(spaces, folds, zeros, seeds, ablationSeeds, tally, args.cap);
  process.stdout.write(`(main comparison over ${seeds} seeds; diffusion and the ablations over ${ablationSeeds}${Number.isFinite(args.cap) ? `; runs capped at ${args.cap} measurements` : ''})\n`);
  const names = ['random', 'grid', 'autotvm64', 'autotvm8', 'ours', 'ours_with_reuse', 'nearest_reuse', 'diffusion', 'diffusion_representative', 'ablation_no_pretraining', 'ablation_no_finetuning'];
  printTable(tally, names);
  const n95 = Object.fromEntries(names.map((n) => [n, tally.summary(n).n95]));
  n95.exact_reuse = 0;
  const shipped95 = Object.fromEntries(variants().map((v) => [v.name, tally.summary(v.name).shipped.n95]));
  const n99 = Object.fromEntries(names.map((n) => [n, tally.summary(n).n99]));
  const zero = summariseZero(zeroMeasurementPicks(zeros));
  process.stdout.write(`\nwith no measurement (the pick shipped as it is; fraction of the optimum over ${spaces.reduce((a, s) => a + s.workloads.length, 0)} kernel x workload, reuse from the kernel's other workloads):\n`);
  for (const [k, z] of Object.entries(zero)) {
    process.stdout.write(`  ${k.padEnd(18)} mean ${fmt(100 * z.mean, 1).padStart(5)}%  median ${fmt(100 * z.median, 1).padStart(5)}%  at >=90/95/99% of the optimum on ${[z.share90, z.share95, z.share99].map((x) => `${fmt(100 * x, 0)}%`).join(' / ')}\n`);
  }
  const live = args.live ? await runLive(spaces, folds, args.liveKernels) : null;
  if (live) for (const l of live) process.stdout.write(`live ${JSON.stringify(l)}\n`);
  const result = {
    bench: 'tuner', mode: args.live ? 'replay+live' : 'replay', seeds, cap: Number.isFinite(args.cap) ? args.cap : null, kernels: spaces.map((s) => s.kernel), n95,
    random_over_ours: n95.random / n95.ours,
    autotvm_over_ours: Math.min(n95.autotvm64, n95.autotvm8) / n95.ours,
    autotvm64_over_ours: n95.autotvm64 / n95.ours, autotvm8_over_ours: n95.autotvm8 / n95.ours,
    random_over_ours_with_reuse: n95.random / n95.ours_with_reuse,
    // counting the schedule each strategy ships unmeasured (0 where it already reaches 95%)
    n95_shipped: shipped95, reuse_within_tenth_of_random_shipped: shipped95.ours_with_reuse <= shipped95.random / 10,
    // at 99% too: where nearly every schedule is within 95% of the optimum, n95 cannot separate strategies
    n99, random_over_ours_n99: n99.random / n99.ours, autotvm_over_ours_n99: Math.min(n99.autotvm64, n99.autotvm8) / n99.ours,
    random_over_ours_with_reuse_n99: n99.random / n99.ours_with_reuse, n95_per_kernel: n95PerKernel,
    share95: Object.fromEntries(stats.map((st) => [st.kernel, median(st.workloads.map((w) => w.share['0.95']))])),
    zero_measurement: zero,
    kendall_tau: ev.tau, top5_recall: ev.recall5, backend: backendInfo().backend, seconds: (performance.now() - t0) / 1000, live,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
  return 0;
}

if (process.argv[1] && /bench[/\\]tuner\.js$/.test(process.argv[1])) {
  main().then((code) => process.exit(code), (e) => { process.stderr.write(`bench:tuner failed: ${(e as Error).stack}\n`); process.exit(1); });
}
