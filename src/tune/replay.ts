// Replay: a measurer that answers from spaces measured exhaustively beforehand (every legal
// schedule's median per workload, fixtures/tuning/replay/*.json, written by
// `python -m adopt_harness.measure --exhaustive`), so strategies are compared cheaply,
// deterministically and repeatably. Compile and run seconds are those recorded when measured.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Batch, Measurer, Result, Status, Target } from './measurer.js';
import type { TuneRecord } from './records.js';
import { type Schedule, Space, type SpaceJson, type Workload, scheduleKey, workloadKey } from './space.js';

export interface ReplayEntry {
  schedule: Schedule;
  status: Status;
  median_s: number | null;
  times_s?: number[];
  error?: string;
}

export interface ReplayFile {
  format: 'adopt-replay/1';
  kernel: string;
  target: Target;
  template_hash: string;
  space: SpaceJson;
  fixed?: Record<string, unknown>;
  repeats?: number;
  threads?: number;
  compile_s?: Record<string, { seconds: number; cached?: boolean; error?: string | null }>;
  workloads: { workload: Workload; example_workload?: Workload; results: ReplayEntry[] }[];
}

export interface ReplayWorkload {
  workload: Workload;
  results: Map<string, ReplayEntry>;
  /** The fastest ok median: the optimum strategies are scored against. */
  best_s: number;
}

export interface ReplaySpace {
  kernel: string;
  target: Target;
  templateHash: string;
  space: Space;
  /** Compile seconds per build key (Space.buildKey). */
  compile: Map<string, number>;
  workloads: ReplayWorkload[];
  path?: string;
}

export function fromReplayFile(f: ReplayFile, path?: string): ReplaySpace {
  if (f.format !== 'adopt-replay/1') throw new Error(`${path ?? 'replay data'}: not a replay file (format ${String(f.format)})`);
  // compile seconds per build (schedules that differ only in their OpenMP schedule share one)
  const space = Space.fromJson(f.space);
  const compile = new Map<string, number>();
  for (const [k, v] of Object.entries(f.compile_s ?? {})) {
    const build = space.buildKey(JSON.parse(k) as Schedule);
    compile.set(build, Math.max(compile.get(build) ?? 0, v.cached ? 0 : v.seconds));
  }
  const workloads = f.workloads.map((w) => {
    const results = new Map(w.results.map((r) => [scheduleKey(r.schedule), r]));
    const oks = w.results.filter((r) => r.status === 'ok' && r.median_s !== null).map((r) => r.median_s as number);
    return { workload: w.workload, results, best_s: oks.length ? Math.min(...oks) : NaN };
  });
  return { kernel: f.kernel, target: f.target, templateHash: f.template_hash, space, compile, workloads, path };
}

export function loadReplayDir(dir: string): ReplaySpace[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((n) => n.endsWith('.json')).sort()
    .map((n) => fromReplayFile(JSON.parse(readFileSync(join(dir, n), 'utf8')) as ReplayFile, join(dir, n)));
}

/** A measurer over replay spaces; asking for a workload it lacks is an error, a schedule it lacks a crash. */
export class ReplayMeasurer implements Measurer {
  readonly name = 'replay';
  private readonly spaces = new Map<string, ReplaySpace>();
  measured = 0;

  constructor(spaces: ReplaySpace[]) {
    for (const s of spaces) this.spaces.set(s.kernel, s);
  }

  private find(kernel: string, workload: Workload): { space: ReplaySpace; w: ReplayWorkload } {
    const space = this.spaces.get(kernel);
    if (!space) throw new Error(`no replay data for kernel '${kernel}'`);
    const w = space.workloads.find((x) => workloadKey(x.workload) === workloadKey(workload));
    if (!w) throw new Error(`no replay data for ${kernel} at ${JSON.stringify(workload)}`);
    return { space, w };
  }

  async measure(kernel: string, workload: Workload, schedules: Schedule[]): Promise<Batch> {
    const { space, w } = this.find(kernel, workload);
    const results: Result[] = schedules.map((s) => {
      this.measured++;
      const e = w.results.get(scheduleKey(s));
      if (!e) return { schedule: s, status: 'crash', median_s: null, compile_s: 0, run_s: 0, error: 'not in the replay data' };
      const run = (e.times_s ?? []).reduce((a, b) => a + b, 0) + (e.median_s ?? 0);
      const build = space.space.buildKey(s);
      return { schedule: s, status: e.status, median_s: e.status === 'ok' ? e.median_s : null, compile_s: space.compile.get(build) ?? 0, build, run_s: run, error: e.error ?? null };
    });
    return { results, templateHash: space.templateHash, target: space.target };
  }

  retime(kernel: string, workload: Workload, schedules: Schedule[]): Promise<Batch> {
    return this.measure(kernel, workload, schedules);
  }
}

/** Replay data as tuner records (every measured schedule of the chosen workloads). */
export function replayRecords(space: ReplaySpace, keep: (w: Workload, index: number) => boolean = () => true): TuneRecord[] {
  const out: TuneRecord[] = [];
  space.workloads.forEach((w, i) => {
    if (!keep(w.workload, i)) return;
    for (const e of w.results.values()) {
      out.push({
        kind: 'tune', v: 1, kernel: space.kernel, template: space.templateHash, workload: w.workload, target: space.target.key,
        schedule: e.schedule, status: e.status, median_s: e.status === 'ok' ? e.median_s : null, source: 'replay', at: '',
      });
    }
  });
  return out;
}
