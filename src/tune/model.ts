// Tuning what a model runs: the rewritten files are run once at their real configuration by the
// harness (native/adopt_harness/workloads.py), which reports every (kernel, workload) the compiled
// kernels were called with; each is then tuned on this target. Workloads of one kernel are tuned
// largest first, so that the smaller ones start from the schedules recorded for the larger (the
// tuner's `auto` strategy reuses this target's records of the kernel as priors).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { runPythonJson } from '../verify/python.js';
import { type Schedule, type Workload, scheduleKey } from './space.js';
import type { Trial } from './strategies/types.js';
import { type TuneOptions, type TuneSummary, tuneWorkload } from './tuner.js';

export interface ModelWorkload { kernel: string; workload: Workload; calls: number; files: string[] }
export interface ClassRun { file: string; class: string; status: 'ran' | 'covered' | 'not_run'; reason?: string; inputs?: string; depth?: Record<string, { from: number; to: number }> }
export interface Discovery {
  workloads: ModelWorkload[];
  classes: ClassRun[];
  errors: { file: string; error: string }[];
  /** Kernels called only below their CPU size floor (they ran the torch code): nothing to tune. */
  belowFloor?: string[];
}

export interface DiscoverOptions {
  /** JSON object: constructor arguments or config attributes on top of the config class's defaults. */
  config?: string;
  batch: number;
  seq: number;
  classes?: string[];
  /** Also run a fused AdamW step (the model's code builds a fused optimizer). */
  optimizer?: boolean;
  threads?: number;
  timeoutMs?: number;
  /** Find the workloads of every call whatever its size (the CPU size floors at 0): for a GPU
   *  target, whose Triton kernels have floors of their own, the run on the CPU stands in for it. */
  anySize?: boolean;
}

/** The rewritten code builds adopt's fused optimizer: its workloads come from an optimizer step. */
export function usesFusedOptimizer(text: string): boolean {
  return /_adopt\.(optimizer_kwargs|fused_optimizer_class|FusedAdamW?)\b/.test(text);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isWorkload(v: unknown): v is Workload {
  return isObject(v) && Object.values(v).every((x) => typeof x === 'number' || typeof x === 'string');
}

/** Checks the harness's answer field by field: a malformed result is an error, never a cast. */
function parseDiscovery(file: string, value: unknown): { workloads: ModelWorkload[]; classes: ClassRun[]; belowFloor: string[] } {
  const bad = (what: string) => new Error(`adopt_harness.workloads on ${file}: malformed result (${what})`);
  if (!isObject(value) || !Array.isArray(value.workloads) || !Array.isArray(value.classes)) throw bad('expected {workloads: [...], classes: [...]}');
  const workloads = value.workloads.map((w, i) => {
    if (!isObject(w) || typeof w.kernel !== 'string' || !isWorkload(w.workload) || typeof w.calls !== 'number') throw bad(`workloads[${i}]`);
    return { kernel: w.kernel, workload: w.workload, calls: w.calls, files: [file] };
  });
  const classes = value.classes.map((c, i) => {
    if (!isObject(c) || typeof c.class !== 'string' || !['ran', 'covered', 'not_run'].includes(String(c.status))) throw bad(`classes[${i}]`);
    const run: ClassRun = { file, class: c.class, status: c.status as ClassRun['status'] };
    if (typeof c.reason === 'string') run.reason = c.reason;
    if (typeof c.inputs === 'string') run.inputs = c.inputs;
    if (isObject(c.depth)) run.depth = c.depth as ClassRun['depth'];
    return run;
  });
  const below = value.below_floor ?? [];
  if (!Array.isArray(below) || !below.every((k) => typeof k === 'string')) throw bad('below_floor');
  return { workloads, classes, belowFloor: below as string[] };
}

/** Runs each rewritten file once at its real size and collects the workloads of its compiled kernels. */
export function discoverWorkloads(files: { path: string; rewritten: string }[], opts: DiscoverOptions): Discovery {
  const found = new Map<string, ModelWorkload>();
  const out: Discovery = { workloads: [], classes: [], errors: [] };
  const below = new Set<string>();
  for (const f of files) {
    const dir = mkdtempSync(join(tmpdir(), 'adopt-tune-'));
    try {
      const copy = join(dir, basename(f.path));
      writeFileSync(copy, f.rewritten);
      const args = [copy, '--original', f.path, '--batch', String(opts.batch), '--seq', String(opts.seq)];
      if (opts.config) args.push('--config', opts.config);
      for (const c of opts.classes ?? []) args.push('--class', c);
      if (opts.optimizer) args.push('--optimizer');
      if (opts.threads) args.push('--threads', String(opts.threads));
      const r = runPythonJson('adopt_harness.workloads', args, opts.timeoutMs ?? 1_800_000, opts.anySize ? { env: { ADOPT_CPU_MIN_BYTES: '0' } } : {});
      if (!r.ok) { out.errors.push({ file: f.path, error: r.error }); continue; }
      const d = parseDiscovery(f.path, r.value);
      out.classes.push(...d.classes);
      for (const k of d.belowFloor) below.add(k);
      for (const w of d.workloads) {
        const key = `${w.kernel}|${scheduleKey(w.workload)}`;
        const seen = found.get(key);
        if (seen) { seen.calls += w.calls; if (!seen.files.includes(f.path)) seen.files.push(f.path); }
        else found.set(key, w);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  out.workloads = [...found.values()].sort((a, b) => a.kernel.localeCompare(b.kernel) || size(b.workload) - size(a.workload));
  out.belowFloor = [...below].filter((k) => !out.workloads.some((w) => w.kernel === k)).sort();
  return out;
}

function size(w: Workload): number {
  return Object.values(w).reduce<number>((p, v) => (typeof v === 'number' && v > 0 ? p * v : p), 1);
}

/** As for one workload (budget per workload), less what each workload brings itself. */
export interface ModelTuneOptions extends Omit<TuneOptions, 'kernel' | 'workload' | 'onTrial' | 'model' | 'pretrained'> {
  onWorkload?: (w: ModelWorkload, i: number) => void;
  onTrial?: (t: Trial) => void;
}

export interface ModelTuneSummary {
  tuned: TuneSummary[];
  measurements: number;
  seconds: number;
  /** Geometric mean over the measured workloads of default time / tuned time (above 1: faster). */
  speedup: number | null;
  entries: { kernel: string; workload: Workload; schedule: Schedule }[];
}

export async function tuneWorkloads(workloads: ModelWorkload[], opts: ModelTuneOptions): Promise<ModelTuneSummary> {
  const tuned: TuneSummary[] = [];
  const t0 = performance.now();
  for (const [i, w] of workloads.entries()) {
    opts.onWorkload?.(w, i);
    const { onWorkload: _, onTrial, ...common } = opts;
    tuned.push(await tuneWorkload({ ...common, kernel: w.kernel, workload: w.workload, onTrial: onTrial ? (t) => onTrial(t) : undefined }));
  }
  const ratios = tuned.map((t) => t.speedup).filter((x): x is number => x !== null && x > 0);
  return {
    tuned,
    measurements: tuned.reduce((n, t) => n + t.measurements, 0),
    seconds: (performance.now() - t0) / 1000,
    speedup: ratios.length ? Math.exp(ratios.reduce((s, r) => s + Math.log(r), 0) / ratios.length) : null,
    entries: tuned.map((t) => ({ kernel: t.kernel, workload: t.workload, schedule: t.schedule })),
  };
}
