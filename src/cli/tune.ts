// `adopt tune --kernel K --shape rows=4096,n=768`: tunes one kernel at one workload on this CPU,
// records every measurement in the record store and prints measurements, time and the speed-up
// over the default schedule. `adopt tune model.py`: the same for every workload the model's
// rewritten code runs at its real configuration (see tune/model.ts).
import { writeFileSync } from 'node:fs';
import { runRewrite } from '../pipeline/index.js';
import { type Discovery, type ModelTuneSummary, tuneWorkloads } from '../tune/model.js';
import { discoverRewrites } from '../tune/rewrite.js';
import { Progress } from '../bench/progress.js';
import { AdoptError } from '../diag.js';
import { LocalMeasurer, type TargetInfo, localTargetInfo } from '../tune/measurer.js';
import { type Device, type Workload, loadRegistry, workloadKey } from '../tune/space.js';
import { STRATEGIES, type StrategyName, type TuneSummary, scheduleFileText, tuneWorkload } from '../tune/tuner.js';

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

export function parseShape(text: string): Workload {
  const w: Workload = {};
  for (const part of text.split(',').map((p) => p.trim()).filter(Boolean)) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.+)$/.exec(part);
    if (!m) throw new AdoptError(`--shape takes NAME=VALUE pairs separated by commas (e.g. rows=4096,n=768), not '${part}'`);
    w[m[1]] = /^-?\d+$/.test(m[2]) ? Number(m[2]) : m[2];
  }
  return w;
}

function fmtMs(s: number | null): string {
  return s === null ? '-' : `${(s * 1e3).toFixed(3)} ms`;
}

function printSummary(s: TuneSummary): void {
  const out = process.stdout;
  const wl = Object.entries(s.workload).map(([k, v]) => `${k}=${v}`).join(',');
  out.write(`${s.kernel} ${wl} on target ${s.target} (strategy ${s.strategy})\n`);
  out.write(`  schedule:     ${JSON.stringify(s.schedule)} (${s.source})\n`);
  out.write(`  measurements: ${s.measurements}${s.failures ? ` (${s.failures} failed: never chosen)` : ''}, ${s.seconds.toFixed(1)} s\n`);
  if (s.speedup !== null) out.write(`  default ${fmtMs(s.default_s)}, tuned ${fmtMs(s.best_s)}: speed-up ${s.speedup.toFixed(2)}x over the default schedule (default time / tuned time, re-timed interleaved; above 1 is faster)\n`);
  else if (s.best_s !== null) out.write(`  recorded time ${fmtMs(s.best_s)}\n`);
  for (const n of s.notes) out.write(`  note: ${n}\n`);
  out.write(`  records: ${s.db}\n`);
}

export function wholeNumber(flag: string, text: string | undefined, dflt: number, min = 0): number {
  const n = Number(text ?? dflt);
  if (!Number.isInteger(n) || n < min) throw new AdoptError(`${flag} takes a whole number${min ? ` of at least ${min}` : ''}, not '${text}'`);
  return n;
}

function commonOptions(opts: TuneCliOptions): { strategy: StrategyName; budget: number; device: Device } {
  const device = opts.target ?? 'cpu';
  if (device !== 'cpu' && device !== 'cuda') throw new AdoptError(`--target must be cpu or cuda, not '${device}'`);
  const strategy = (opts.strategy ?? 'auto') as StrategyName;
  if (!STRATEGIES.includes(strategy)) throw new AdoptError(`--strategy must be one of ${STRATEGIES.join(', ')}, not '${opts.strategy}'`);
  return { strategy, budget: wholeNumber('--budget', opts.budget, 32), device };
}

export async function tuneCommand(file: string | undefined, opts: TuneCliOptions): Promise<number> {
  if (file) {
    if (opts.kernel || opts.shape) throw new AdoptError('give a model file or --kernel K --shape ..., not both');
    return tuneModelCommand(file, opts);
  }
  if (!opts.kernel || !opts.shape) throw new AdoptError('adopt tune needs a model file, or --kernel K and --shape NAME=VALUE,... (e.g. --kernel rms_norm --shape rows=4096,n=768)');
  const { strategy, budget, device } = commonOptions(opts);
  let reg;
  try { reg = loadRegistry(); } catch (e) { throw new AdoptError((e as Error).message); }
  const k = reg.kernels[opts.kernel];
  if (!k) throw new AdoptError(`unknown kernel '${opts.kernel}'; known: ${Object.keys(reg.kernels).sort().join(', ')}`);
  const workload = parseShape(opts.shape);
  const dtype = opts.dtype ?? String(workload.dtype ?? 'float32');
  if (device === 'cuda' && !k.cuda_space) throw new AdoptError(`${opts.kernel} has no GPU (Triton) kernel to tune; kernels with one: ${Object.keys(reg.kernels).filter((n) => reg.kernels[n].cuda_space).sort().join(', ')}`);
  const dtypes = dtypesOn(k, device);
  if (!dtypes.includes(dtype)) throw new AdoptError(`${opts.kernel} takes dtype ${dtypes.join(' or ')}, not '${dtype}'`);
  workload.dtype = dtype;
  const missing = k.workload_fields.filter((f) => f !== 'dtype' && !(f in workload));
  const extra = Object.keys(workload).filter((f) => !k.workload_fields.includes(f));
  if (missing.length || extra.length) {
    throw new AdoptError(`--shape for ${opts.kernel} names ${k.workload_fields.filter((f) => f !== 'dtype').join(', ')}${missing.length ? `; missing: ${missing.join(', ')}` : ''}${extra.length ? `; unknown: ${extra.join(', ')}` : ''}`);
  }
  const info = targetInfo(device);
  const bar = new Progress('tuning', budget);
  const summary = await tuneWorkload({
    kernel: opts.kernel, workload, budget, strategy, db: opts.db, seed: Number(opts.seed ?? '0'), force: !!opts.force, registry: reg, targetInfo: info, device,
    measurer: new LocalMeasurer({ device, repeats: opts.repeats ? Number(opts.repeats) : undefined }),
    onTrial: (t) => bar.tick(`${t.status} ${t.median_s !== null ? (t.median_s * 1e3).toFixed(2) + 'ms' : ''}`),
  });
  bar.end();
  if (opts.schedules) {
    writeFileSync(opts.schedules, scheduleFileText(opts.schedules, info.target, [{ kernel: summary.kernel, workload: summary.workload, schedule: summary.schedule }]));
    summary.notes.push(`schedule written to ${opts.schedules}`);
  }
  if (opts.json) process.stdout.write(`${JSON.stringify(summary, null, 1)}\n`);
  else printSummary(summary);
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
  const run = runRewrite(paths, { rules: opts.rules });
  const bad = run.files.filter((f) => f.error);
  if (bad.length && bad.length === run.files.length) throw new AdoptError(bad.map((f) => `${f.path}: ${f.error}`).join('\n'));
  const rewritten = run.files.filter((f) => !f.error && f.rewritten !== f.original).length;
  if (!rewritten) return { discovery: { workloads: [], classes: [], errors: [] }, rewritten: 0 };
  const discovery = discoverRewrites(run.files, {
    config: opts.config, batch: wholeNumber('--batch', opts.batch, 4, 1), seq: wholeNumber('--seq', opts.seq, 512, 1), classes: opts.class,
    threads: opts.threads ? wholeNumber('--threads', opts.threads, 1, 1) : undefined,
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
  try { return localTargetInfo(undefined, device); } catch (e) { throw new AdoptError((e as Error).message); }
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
  const { strategy, budget, device } = commonOptions(opts);
  const workloads = inDtype(device === 'cpu' ? discovery.workloads : gpuWorkloads(discovery.workloads), opts.dtype, device);
  const bar = new Progress('tuning', workloads.length * Math.max(budget, 1));
  const summary = await tuneWorkloads(workloads, {
    budget, strategy, db: opts.db, seed: Number(opts.seed ?? '0'), force: !!opts.force, targetInfo: info, device,
    measurer: new LocalMeasurer({ device, repeats: opts.repeats ? Number(opts.repeats) : undefined }),
    onTrial: (t) => bar.tick(`${t.status}`),
  });
  bar.end();
  return summary;
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
  out.write(`\n${s.tuned.length} workload(s), ${s.measurements} measurement(s), ${s.seconds.toFixed(1)} s; `);
  out.write(s.speedup !== null ? `geometric-mean speed-up ${s.speedup.toFixed(2)}x over the default schedules (default time / tuned time, re-timed interleaved; above 1 is faster)\n` : 'no speed-up measured (records reused or budget 0)\n');
}

async function tuneModelCommand(file: string, opts: TuneCliOptions): Promise<number> {
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
  if (opts.schedules) writeFileSync(opts.schedules, scheduleFileText(opts.schedules, info.target, summary.entries));
  if (opts.json) process.stdout.write(`${JSON.stringify({ ...summary, classes: discovery.classes, below_floor: discovery.belowFloor ?? [], schedules: opts.schedules ?? null }, null, 1)}\n`);
  else {
    printModelSummary(summary, discovery);
    process.stdout.write(opts.schedules ? `schedules written to ${opts.schedules}\n` : `records: ${summary.tuned[0]?.db}; \`adopt rewrite --tune\` reuses them with no measurement\n`);
  }
  return 0;
}
