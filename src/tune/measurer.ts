// The measurer: times schedules of one kernel at one workload. An interface, so that the local
// Python worker (native/adopt_harness/measure.py), the replay of recorded spaces and, later,
// workers on a fleet of targets are interchangeable (docs/tuner.md says how Ray would run it).
import { runPython, streamPython } from '../verify/python.js';
import type { Schedule, Workload } from './space.js';

export type Status = 'ok' | 'compile_error' | 'crash' | 'timeout' | 'wrong';

export interface Result {
  schedule: Schedule;
  status: Status;
  /** Median seconds of the timed runs (forward and backward); null unless ok. */
  median_s: number | null;
  /** Seconds spent compiling this schedule (0 when the library was cached). */
  compile_s: number;
  /** The build it needs, where the measurer knows it: a search pays compile_s once per build. */
  build?: string;
  /** Seconds spent running it (warm-up, check and repeats), as far as the measurer knows. */
  run_s: number;
  error?: string | null;
}

export interface Target {
  key: string;
  device: string;
  cpu?: string;
  cores?: number;
  flags?: string[];
  compiler?: string | null;
  torch?: string;
  gpu?: string;
  [k: string]: unknown;
}

export interface Batch {
  results: Result[];
  /** Hash of the kernel's source rendered at its default schedule (changes with the template). */
  templateHash: string;
  target: Target;
}

export interface MeasureOptions {
  /** Per schedule: check the output against the reference (new configurations); default all. */
  check?: boolean[];
  /** Called as each schedule's result comes in (so a record can be written before the next). */
  onResult?: (r: Result, index: number) => void;
}

export interface Measurer {
  readonly name: string;
  measure(kernel: string, workload: Workload, schedules: Schedule[], opts?: MeasureOptions): Promise<Batch>;
  /** Finalists timed again, interleaved (A B C A B C ...), for a decision robust to drift. */
  retime(kernel: string, workload: Workload, schedules: Schedule[]): Promise<Batch>;
}

export interface LocalOptions {
  /** Where the schedules run: this machine's CPU, or its CUDA device through the Triton kernels. */
  device?: 'cpu' | 'cuda';
  repeats?: number;
  warmup?: number;
  timeoutS?: number;
  threads?: number;
  /** What a run's time is: 'wall' (latency, the default) or 'cpu' (the process's CPU time: at one
   *  thread the run's own time, without what other processes on a loaded machine took). */
  clock?: 'wall' | 'cpu';
  seed?: number;
  /** Python modules the worker imports first (tests register fake kernels this way). */
  imports?: string[];
  python?: string;
  env?: Record<string, string>;
}

interface WireResult {
  schedule: Schedule; status: Status; median_s: number | null; times_s?: number[]; compile_s?: number; error?: string | null;
}

function fromWire(r: WireResult, warmup: number): Result {
  const times = r.times_s ?? [];
  const run = times.reduce((a, b) => a + b, 0) + (r.median_s ?? 0) * (warmup + 1);
  return { schedule: r.schedule, status: r.status, median_s: r.status === 'ok' ? r.median_s : null, compile_s: r.compile_s ?? 0, run_s: run, error: r.error ?? null };
}

/** Runs the Python measurer locally: one worker process per batch, one child per schedule run. */
export class LocalMeasurer implements Measurer {
  readonly name = 'local';
  constructor(private readonly opts: LocalOptions = {}) {}

  measure(kernel: string, workload: Workload, schedules: Schedule[], mo: MeasureOptions = {}): Promise<Batch> {
    return this.request({ op: 'measure', kernel, workload, schedules, check: mo.check ?? true }, mo.onResult);
  }

  retime(kernel: string, workload: Workload, schedules: Schedule[]): Promise<Batch> {
    return this.request({ op: 'retime', kernel, workload, schedules, check: false });
  }

  private request(req: Record<string, unknown>, onResult?: (r: Result, i: number) => void): Promise<Batch> {
    const o = this.opts;
    const warmup = o.warmup ?? 1;
    const full = {
      ...req, device: o.device ?? 'cpu', warmup, repeats: o.repeats ?? 5, timeout_s: o.timeoutS ?? 30, threads: o.threads ?? null, clock: o.clock ?? 'wall', seed: o.seed ?? 0, imports: o.imports ?? [],
    };
    const n = (req.schedules as unknown[]).length;
    const limitMs = ((o.timeoutS ?? 30) * (n + 2) + 300) * 1000;
    let last = '';
    const onLine = (line: string) => {
      if (!line.trim()) return;
      last = line;
      try {
        const msg = JSON.parse(line) as { progress?: number; result?: WireResult };
        if (msg.progress !== undefined && msg.result && onResult) onResult(fromWire(msg.result, warmup), msg.progress - 1);
      } catch { /* a stray line; only the last one must parse */ }
    };
    return streamPython(['-m', 'adopt_harness.measure'], { python: o.python, env: o.env, timeoutMs: limitMs, input: JSON.stringify(full), onLine }).then((end) => {
      if (end.error && !last) throw new MeasurerError(`cannot start the measurer: ${end.error}`);
      try {
        const out = JSON.parse(last) as { error?: string; results?: WireResult[]; template_hash: string; target: Target };
        if (out.error || !out.results) throw new Error(out.error ?? 'no results');
        return { results: out.results.map((r) => fromWire(r, warmup)), templateHash: out.template_hash, target: out.target };
      } catch (e) {
        throw new MeasurerError(`the measurer failed (exit ${end.code ?? end.signal}): ${(e as Error).message}${end.stderr ? ` | ${end.stderr.trim().split('\n').slice(-3).join(' | ')}` : ''}`);
      }
    });
  }
}

/** The measurer itself failed (it could not start, or answered nothing usable): no schedule is to
 *  blame, so nothing of the batch is recorded and the run stops. */
export class MeasurerError extends Error {
  readonly harness = true;
  constructor(message: string) {
    super(message);
    this.name = 'MeasurerError';
  }
}

export interface TargetInfo {
  target: Target;
  /** kernel -> dtype -> template hash */
  templates: Record<string, Record<string, string>>;
}

const targetCache = new Map<string, TargetInfo>();

/** This machine's target fingerprint and every kernel's template hash, for its CPU or its CUDA
 *  device (one Python call per process and device). */
export function localTargetInfo(env?: Record<string, string>, device: 'cpu' | 'cuda' = 'cpu'): TargetInfo {
  const cached = targetCache.get(device);
  if (cached && !env) return cached;
  const r = runPython(['-W', 'ignore', '-m', 'adopt_harness.measure', '--info', '--device', device], { timeoutMs: 300_000, env });
  const last = (r.ok ? r.stdout : '').trim().split('\n').pop() ?? '';
  try {
    const info = JSON.parse(last) as TargetInfo;
    if (!info.target?.key) throw new Error('no target key');
    if (!env) targetCache.set(device, info);
    return info;
  } catch {
    const why = r.ok ? (r.stderr || '').trim().split('\n').slice(-3).join(' | ') : r.error;
    throw new Error(`cannot fingerprint this target (python -m adopt_harness.measure --info --device ${device}): ${why || 'no output'}`);
  }
}
