// `adopt tune --kernel K --shape rows=4096,n=768`: tunes one kernel at one workload on this CPU,
// records every measurement in the record store and prints measurements, time and the speed-up
// over the default schedule. `adopt tune model.py`: the same for every workload the model's
// rewritten code runs at its real configuration (see tune/model.ts).
import { resolve } from 'node:path';
import { filesWithSyntaxErrors, planRewrite, synthesizePlan } from '../pipeline/index.js';
import { type Discovery, type ModelTuneSummary, tuneWorkloads } from '../tune/model.js';
import { discoverRewrites } from '../tune/rewrite.js';
import { Progress } from '../bench/progress.js';
import { AdoptError, type Diagnostic } from '../diag.js';
import { LocalMeasurer, MeasurerError, type TargetInfo, localTargetInfo } from '../tune/measurer.js';
import { RecordStore, checkWritable } from '../tune/records.js';
import { type Device, loadRegistry, workloadKey } from '../tune/space.js';
import { mergeScheduleFile, readScheduleFile } from '../tune/schedule-file.js';
import { STRATEGIES, type StrategyName, type TuneSummary, tuneWorkload } from '../tune/tuner.js';
import { parseShape } from '../tune/workload.js';

/** The variable that moves every kernel's CPU size floor (adopt_kernels._dispatch). */
const CPU_MIN_BYTES_ENV = 'ADOPT_CPU_MIN_BYTES';

export interface TuneCliOptions {
  kernel?: string;
  shape?: string;
  dtype?: string;
  target?: string;
  budget?: string;
  strategy?: string;
  db?: string;
  schedules?: string;
  seed?: string;
  force?: boolean;
  repeats?: string;
  json?: boolean;
  config?: string;
  batch?: string;
  seq?: string;
  class?: string[];
  threads?: string;
  rules?: string;
}

function fmtMs(s: number | null): string {
  return s === null ? '-' : `${(s * 1e3).toFixed(3)} ms`;
}

function printSummary(s: TuneSummary): void {
  const out = process.stdout;
  const wl = Object.entries(s.workload).map(([k, v]) => `${k}=${v}`).join(',');
  out.write(`${s.kernel} ${wl} on target ${s.target} (strategy ${s.strategy})\n`);
  out.write(`  schedule:     ${JSON.stringify(s.schedule)} (${s.source})\n`);
  out.write(`  measurements: ${measuredText(s)}${s.failures ? ` (${s.failures} schedule(s) failed: never chosen)` : ''}, ${s.seconds.toFixed(1)} s\n`);
  if (s.speedup !== null) out.write(`  default ${fmtMs(s.default_s)}, tuned ${fmtMs(s.best_s)}: speed-up ${s.speedup.toFixed(2)}x over the default schedule (default time / tuned time, re-timed interleaved; above 1 is faster)\n`);
  else if (s.best_s !== null) out.write(`  recorded time ${fmtMs(s.best_s)}\n`);
  for (const n of s.notes) out.write(`  note: ${n}\n`);
  out.write(`  records: ${s.db}\n`);
}

/** What the budget paid for, and what came on top of it: the search's measurements (what
 *  `--budget` counts), those a stopped run left, and the interleaved re-timing. */
export function measuredText(s: Pick<TuneSummary, 'measurements' | 'resumed' | 'retimed'>): string {
  const parts = [`${s.measurements} measured`];
  if (s.resumed) parts.push(`${s.resumed} from a stopped run`);
  if (s.retimed) parts.push(`${s.retimed} re-timed (the best and the default)`);
  return parts.join(' + ');
}

export function wholeNumber(flag: string, text: string | undefined, dflt: number, min = 0): number {
  const n = text === undefined ? dflt : /^[0-9]+$/.test(text.trim()) ? Number(text.trim()) : NaN;
  if (!Number.isSafeInteger(n) || n < min) throw new AdoptError(`${flag} takes a whole number${min ? ` of at least ${min}` : ''}, not '${text}'`);
  return n;
}

interface Common { strategy: StrategyName; budget: number; device: Device; seed: number; repeats: number | undefined }

/** Every option that takes a number or a name, checked before anything runs. */
function commonOptions(opts: TuneCliOptions): Common {
  const device = opts.target ?? 'cpu';
  if (device !== 'cpu' && device !== 'cuda') throw new AdoptError(`--target must be cpu or cuda, not '${device}'`);
  const strategy = (opts.strategy ?? 'auto') as StrategyName;
  if (!STRATEGIES.includes(strategy)) throw new AdoptError(`--strategy must be one of ${STRATEGIES.join(', ')}, not '${opts.strategy}'`);
  return {
    strategy, device, budget: wholeNumber('--budget', opts.budget, 32), seed: wholeNumber('--seed', opts.seed, 0),
    repeats: opts.repeats === undefined ? undefined : wholeNumber('--repeats', opts.repeats, 5, 1),
  };
}

/** The record store and the schedule file, checked before anything is measured: a path that
 *  cannot be written stops the command now, not after the measurements. */
function checkOutputs(opts: TuneCliOptions): void {
  checkWritable(new RecordStore(opts.db).path, 'the record store');
  if (opts.schedules) {
    readScheduleFile(resolve(opts.schedules));
    checkWritable(opts.schedules, 'the schedule file');
  }
}

/** Ctrl-C while measuring: what was measured is in the record store already (each result is
 *  written as it comes); say so and where, and exit as a shell expects of an interrupt. */
function onInterrupt(db: string): () => void {
  const handler = () => {
    let kept = 0;
    try { kept = new RecordStore(db, () => {}).readAll().records.length; } catch { /* the message below still holds */ }
    process.stderr.write(`\nadopt: interrupted: every measurement finished so far is kept in ${db} (${kept} record(s) there); running the same command again resumes the search\n`);
    process.exit(130);
  };
  process.on('SIGINT', handler);
  return () => process.off('SIGINT', handler);
}

/** A measurer that failed is no schedule's fault: the run stops with its message (exit 2). */
async function measuring<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (e) {
    if (e instanceof MeasurerError) throw new AdoptError(`${e.message}; the run stopped (the measurements recorded before it are kept)`);
    throw e;
  }
}

export async function tuneCommand(file: string | undefined, opts: TuneCliOptions): Promise<number> {
  if (file) {
    if (opts.kernel || opts.shape) throw new AdoptError('give a model file or --kernel K --shape ..., not both');
    return tuneModelCommand(file, opts);
  }
  if (!opts.kernel || !opts.shape) throw new AdoptError('adopt tune needs a model file, or --kernel K and --shape NAME=VALUE,... (e.g. --kernel rms_norm --shape rows=4096,n=768)');
  const { strategy, budget, device, seed, repeats } = commonOptions(opts);
  let reg;
  try { reg = loadRegistry(); } catch (e) { throw new AdoptError((e as Error).message); }
  const k = reg.kernels[opts.kernel];
  if (!k) throw new AdoptError(`unknown kernel '${opts.kernel}'; known: ${Object.keys(reg.kernels).sort().join(', ')}`);
  const workload = parseShape(opts.shape, opts.kernel, k);
  if (opts.dtype !== undefined && workload.dtype !== undefined && workload.dtype !== opts.dtype) throw new AdoptError(`--dtype ${opts.dtype} and --shape dtype=${workload.dtype} disagree`);
  const dtype = opts.dtype ?? String(workload.dtype ?? 'float32');
  if (device === 'cuda' && !k.cuda_space) throw new AdoptError(`${opts.kernel} has no GPU (Triton) kernel to tune; kernels with one: ${Object.keys(reg.kernels).filter((n) => reg.kernels[n].cuda_space).sort().join(', ')}`);
  const dtypes = dtypesOn(k, device);
  if (!dtypes.includes(dtype)) throw new AdoptError(`${opts.kernel} takes dtype ${dtypes.join(' or ')}, not '${dtype}'`);
  workload.dtype = dtype;
  checkOutputs(opts);
  const info = targetInfo(device);
  const db = new RecordStore(opts.db).path;
  const bar = new Progress('tuning', budget);
  const release = onInterrupt(db);
  let summary: TuneSummary;
  try {
    summary = await measuring(() => tuneWorkload({
      kernel: opts.kernel as string, workload, budget, strategy, db: opts.db, seed, force: !!opts.force, registry: reg, targetInfo: info, device,
      measurer: new LocalMeasurer({ device, repeats }),
      onTrial: (t) => bar.tick(`${t.status} ${t.median_s !== null ? (t.median_s * 1e3).toFixed(2) + 'ms' : ''}`),
    }));
  } finally {
    release();
    bar.end();
  }
  const failed = summary.source === 'default' && summary.failures > 0 && summary.ok === 0;
  if (opts.schedules && !failed) {
    mergeScheduleFile(opts.schedules, info.target, [{ kernel: summary.kernel, workload: summary.workload, schedule: summary.schedule }]);
    summary.notes.push(`schedule written to ${opts.schedules}`);
  }
  if (opts.json) process.stdout.write(`${JSON.stringify(summary, null, 1)}\n`);
  else printSummary(summary);
  if (failed) {
    process.stderr.write(`adopt: every schedule measured failed, the default included (the records say why: adopt records list --db ${db}); nothing was tuned\n`);
    return 2;
  }
  return 0;
}

export function checkConfig(flag: string, text: string | undefined): void {
  if (text === undefined) return;
  let parsed: unknown;
  try { parsed = JSON.parse(text); } catch { parsed = undefined; }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new AdoptError(`${flag} takes a JSON object of config attributes or constructor arguments, not '${text}'`);
}

/** What a model's rewritten code runs, found at its real size; nothing to tune is said, not an error. */
export function modelWorkloads(paths: string[], opts: TuneCliOptions): { discovery: Discovery; rewritten: number } {
  checkConfig('--config', opts.config);
  const plan = planRewrite(paths, { rules: opts.rules });
  // a file that does not parse says where, as `adopt rewrite` does: running what was rewritten
  // around the error would fail in Python without a line to go to
  const unparsed = filesWithSyntaxErrors(plan.program);
  if (unparsed.size) {
    const diags: Diagnostic[] = plan.program.files.filter((f) => unparsed.has(f.path)).flatMap((f) => f.diagnostics.filter((d) => d.severity === 'error'));
    throw new AdoptError(`syntax error in ${[...unparsed].join(', ')}: nothing to tune until it parses`, diags);
  }
  const run = synthesizePlan(plan);
  const bad = run.files.filter((f) => f.error);
  if (bad.length && bad.length === run.files.length) throw new AdoptError(bad.map((f) => `${f.path}: ${f.error}`).join('\n'));
  const rewritten = run.files.filter((f) => !f.error && f.rewritten !== f.original).length;
  if (!rewritten) return { discovery: { workloads: [], classes: [], errors: [] }, rewritten: 0 };
  const discovery = discoverRewrites(run.files, {
    config: opts.config, batch: wholeNumber('--batch', opts.batch, 4, 1), seq: wholeNumber('--seq', opts.seq, 512, 1), classes: opts.class,
    threads: opts.threads !== undefined ? wholeNumber('--threads', opts.threads, 1, 1) : undefined,
    anySize: opts.target === 'cuda',
  });
  return { discovery, rewritten };
}

export function workloadText(w: Record<string, string | number>): string {
  return Object.entries(w).filter(([k]) => k !== 'dtype').map(([k, v]) => `${k}=${v}`).join(',') + ` ${w.dtype ?? ''}`;
}

/** Tunes the discovered workloads; exit 2 when the model could not be run at all. */
/** This target's fingerprint (the Python side computes it once per call, so callers keep it). */
export function targetInfo(device: Device = 'cpu'): TargetInfo {
  try {
    return localTargetInfo(undefined, device);
  } catch (e) {
    const msg = (e as Error).message;
    if (device === 'cuda' && /no CUDA device/.test(msg)) throw new AdoptError('no CUDA device here (torch sees no GPU): --target cuda tunes on a GPU; tune for this CPU with --target cpu');
    throw new AdoptError(msg);
  }
}

export async function tuneDiscovered(discovery: Discovery, opts: TuneCliOptions, label: string, info: TargetInfo): Promise<ModelTuneSummary | null> {
  for (const e of discovery.errors) process.stderr.write(`adopt: ${e.file}: cannot run the rewritten model to find its workloads: ${e.error}\n`);
  for (const c of discovery.classes.filter((x) => x.status === 'not_run')) process.stderr.write(`adopt: note: ${c.file}: ${c.class} not run (${c.reason})\n`);
  if (!discovery.workloads.length) {
    if (!discovery.classes.some((c) => c.status === 'ran')) throw new AdoptError(`${label}: no model class could be built and run at its real size (above); give its sizes with --config '{"hidden_size": ...}' or name the model with --class`);
    const below = discovery.belowFloor ?? [];
    process.stderr.write(below.length
      ? `adopt: ${label}: the model ran, but every call of ${below.join(', ')} was below the kernel's CPU size floor at these sizes (--batch, --seq, --config): those calls run the torch code, so there is nothing to tune (${CPU_MIN_BYTES_ENV}=0 tunes them anyway)\n`
      : `adopt: ${label}: the model ran, but no compiled kernel was called (CPU, float32/bfloat16 only); nothing to tune\n`);
    return null;
  }
  const { strategy, budget, device, seed, repeats } = commonOptions(opts);
  const workloads = inDtype(device === 'cpu' ? discovery.workloads : gpuWorkloads(discovery.workloads), opts.dtype, device);
  const bar = new Progress('tuning', workloads.length * Math.max(budget, 1));
  const release = onInterrupt(new RecordStore(opts.db).path);
  try {
    return await measuring(() => tuneWorkloads(workloads, {
      budget, strategy, db: opts.db, seed, force: !!opts.force, targetInfo: info, device,
      measurer: new LocalMeasurer({ device, repeats }),
      onTrial: (t) => bar.tick(`${t.status}`),
    }));
  } finally {
    release();
    bar.end();
  }
}

/** The dtypes a kernel takes on a device (its Triton kernels take float16 too). */
function dtypesOn(k: { dtypes: string[] }, device: Device): string[] {
  return device === 'cuda' ? [...k.dtypes, 'float16'] : k.dtypes;
}

/** The model's workloads in the dtype it will run in: `--dtype`, else bfloat16 on a GPU. The run
 *  that finds them is a float32 one on the CPU, and a schedule is looked up by dtype, so float32
 *  records would never be read by a bfloat16 model. Workloads that become one are merged. */
function inDtype(workloads: Discovery['workloads'], asked: string | undefined, device: Device): Discovery['workloads'] {
  const dtype = asked ?? (device === 'cuda' ? 'bfloat16' : undefined);
  if (!dtype) return workloads;
  const reg = loadRegistry();
  const merged = new Map<string, Discovery['workloads'][number]>();
  for (const w of workloads) {
    const dtypes = dtypesOn(reg.kernels[w.kernel], device);
    if (!dtypes.includes(dtype)) throw new AdoptError(`--dtype ${dtype}: ${w.kernel} takes ${dtypes.join(' or ')}${device === 'cuda' ? ' on a GPU' : ''}`);
    const workload = 'dtype' in w.workload ? { ...w.workload, dtype } : w.workload;
    const key = `${w.kernel} ${workloadKey(workload)}`;
    const seen = merged.get(key);
    if (seen) merged.set(key, { ...seen, calls: seen.calls + w.calls, files: [...new Set([...seen.files, ...w.files])] });
    else merged.set(key, { ...w, workload });
  }
  return [...merged.values()];
}

/** The workloads of kernels that have a Triton kernel (the model's shapes are the same on the GPU);
 *  the rest are named once. */
function gpuWorkloads(workloads: Discovery['workloads']): Discovery['workloads'] {
  const reg = loadRegistry();
  const skipped = [...new Set(workloads.filter((w) => !reg.kernels[w.kernel]?.cuda_space).map((w) => w.kernel))];
  if (skipped.length) process.stderr.write(`adopt: note: no GPU kernel for ${skipped.join(', ')}: not tuned for cuda\n`);
  return workloads.filter((w) => reg.kernels[w.kernel]?.cuda_space);
}

export function printModelSummary(s: ModelTuneSummary, discovery: Discovery, out: NodeJS.WritableStream = process.stdout): void {
  const ran = discovery.classes.filter((c) => c.status === 'ran');
  for (const c of ran) {
    const depth = Object.entries(c.depth ?? {}).map(([k, v]) => `${k} ${v.from} -> ${v.to}`).join(', ');
    out.write(`ran ${c.class} on ${c.inputs}${depth ? ` (depth cut for finding workloads: ${depth})` : ''}\n`);
  }
  if (discovery.belowFloor?.length) {
    out.write(`called only below their CPU size floor at these sizes (they run the torch code; not tuned): ${discovery.belowFloor.join(', ')}\n`);
  }
  out.write(`\n${'kernel'.padEnd(18)} ${'workload'.padEnd(60)} ${'schedule from'.padEnd(15)} meas.  speed-up over default\n`);
  for (const t of s.tuned) {
    out.write(`${t.kernel.padEnd(18)} ${workloadText(t.workload).padEnd(60)} ${t.source.padEnd(15)} ${String(t.measurements).padStart(5)}  ${t.speedup !== null ? `${t.speedup.toFixed(2)}x` : '-'}\n`);
  }
  const retimed = s.tuned.reduce((n, t) => n + (t.retimed ?? 0), 0);
  out.write(`\n${s.tuned.length} workload(s), ${s.measurements} measured${retimed ? ` + ${retimed} re-timed (each workload's best and its default)` : ''}, ${s.seconds.toFixed(1)} s; `);
  out.write(s.speedup !== null ? `geometric-mean speed-up ${s.speedup.toFixed(2)}x over the default schedules (default time / tuned time, re-timed interleaved; above 1 is faster)\n` : 'no speed-up measured (records reused or budget 0)\n');
}

async function tuneModelCommand(file: string, opts: TuneCliOptions): Promise<number> {
  commonOptions(opts);
  wholeNumber('--batch', opts.batch, 4, 1);
  wholeNumber('--seq', opts.seq, 512, 1);
  if (opts.threads !== undefined) wholeNumber('--threads', opts.threads, 1, 1);
  checkOutputs(opts);
  const { discovery, rewritten } = modelWorkloads([file], opts);
  if (!rewritten) {
    process.stdout.write(`${file}: no site is rewritten into a kernel, so there is nothing to tune\n`);
    return 0;
  }
  const info = targetInfo(commonOptions(opts).device);
  const summary = await tuneDiscovered(discovery, opts, file, info);
  if (!summary) {
    if (opts.json) {
      const nothing = { tuned: [], measurements: 0, seconds: 0, speedup: null, entries: [] };
      process.stdout.write(`${JSON.stringify({ ...nothing, classes: discovery.classes, below_floor: discovery.belowFloor ?? [], schedules: null }, null, 1)}\n`);
    }
    return 0;
  }
  if (opts.schedules) mergeScheduleFile(opts.schedules, info.target, summary.entries);
  if (opts.json) process.stdout.write(`${JSON.stringify({ ...summary, classes: discovery.classes, below_floor: discovery.belowFloor ?? [], schedules: opts.schedules ?? null }, null, 1)}\n`);
  else {
    printModelSummary(summary, discovery);
    process.stdout.write(opts.schedules ? `schedules written to ${opts.schedules}\n` : `records: ${summary.tuned[0]?.db}; \`adopt rewrite --tune\` reuses them with no measurement\n`);
  }
  const failed = summary.tuned.filter((t) => t.source === 'default' && t.failures > 0 && t.ok === 0);
  if (failed.length) {
    for (const t of failed) process.stderr.write(`adopt: ${t.kernel} ${workloadText(t.workload)}: every schedule measured failed, the default included; its default schedule is kept\n`);
    return 2;
  }
  return 0;
}
