// The tuner's record store: append-only JSON lines under the user's cache directory
// ($XDG_CACHE_HOME/adopt/records.jsonl or ~/.cache/adopt/records.jsonl; $ADOPT_DB or --db FILE
// chooses another). One record per measured schedule, keyed by kernel, template hash, workload
// (its sizes and dtype) and the target fingerprint's key. Each append is one write of one line
// to a file opened with O_APPEND, so two processes can record at once without tearing lines. A
// corrupt line (not JSON, a field missing or mistyped, a time that is not a positive number) is
// skipped with a warning naming FILE:LINE; a record of another target is kept in the file but
// never used as this target's.
import { accessSync, closeSync, constants, existsSync, mkdirSync, openSync, readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { AdoptError } from '../diag.js';
import { appendStoreLine } from '../line-store.js';
import type { Status } from './measurer.js';
import { type Schedule, type Workload, scheduleKey, workloadKey } from './space.js';

export const RECORD_KIND = 'tune';

export interface TuneRecord {
  kind: typeof RECORD_KIND;
  v: 1;
  kernel: string;
  /** Hash of the kernel source rendered at the default schedule. */
  template: string;
  workload: Workload;
  /** The target fingerprint's key; `target_info` carries the rest (CPU, flags, compiler, torch). */
  target: string;
  target_info?: Record<string, unknown>;
  schedule: Schedule;
  status: Status;
  median_s: number | null;
  compile_s?: number;
  /** Why a schedule that is not ok failed (the harness's message). */
  error?: string | null;
  /** measure: one batch run; retime: finalists timed interleaved at the end of a finished run
   *  (preferred when present); replay: a whole space measured beforehand. */
  source: 'measure' | 'retime' | 'replay' | 'pretrain';
  at: string;
}

export function defaultDbPath(): string {
  if (process.env.ADOPT_DB) return resolve(process.env.ADOPT_DB);
  const base = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(base, 'adopt', 'records.jsonl');
}

export interface ReadResult {
  records: TuneRecord[];
  warnings: string[];
}

const STATUSES: readonly string[] = ['ok', 'compile_error', 'crash', 'timeout', 'wrong'];

function isRecord(r: unknown): r is TuneRecord {
  const o = r as TuneRecord;
  return !!o && typeof o === 'object' && o.kind === RECORD_KIND && typeof o.kernel === 'string' && typeof o.template === 'string'
    && typeof o.target === 'string' && !!o.workload && typeof o.workload === 'object' && !!o.schedule && typeof o.schedule === 'object'
    && typeof o.status === 'string' && (o.median_s === null || typeof o.median_s === 'number');
}

/** Why a well-formed record still cannot be believed, or null: a time that no run can take
 *  (zero, negative, not finite) would win every comparison. */
function implausible(o: TuneRecord): string | null {
  if (!STATUSES.includes(o.status)) return `unknown status '${o.status}'`;
  if (o.status === 'ok' && (o.median_s === null || !Number.isFinite(o.median_s) || o.median_s <= 0)) return `time ${String(o.median_s)} s is not a positive number`;
  return null;
}

const lines = new WeakMap<TuneRecord, string>();

/** FILE:LINE of a record read from a store (for warnings about it); null for one made in memory. */
export function recordPlace(r: TuneRecord): string | null {
  return lines.get(r) ?? null;
}

/** Whether a record belongs to a finished run: the finalists' interleaved re-timing is written
 *  last, and a replayed space was measured whole. A run stopped before that left only batch
 *  medians, never compared with the default. */
export function finishedRun(r: TuneRecord): boolean {
  return r.source === 'retime' || r.source === 'replay';
}

/** Stops with a clear message when `path` cannot take records (a directory, a parent that is a
 *  file, no permission), creating its directory as an append would; nothing is left behind. */
export function checkWritable(path: string, what: string): void {
  const full = resolve(path);
  try {
    if (existsSync(full) && statSync(full).isDirectory()) throw new Error('it is a directory');
    mkdirSync(dirname(full), { recursive: true });
    // an existing store is opened as an append would open it; a new one is not created here (a
    // file made and removed again could take another writer's first records with it)
    if (existsSync(full)) closeSync(openSync(full, 'a'));
    else accessSync(dirname(full), constants.W_OK);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why = err.code === 'EEXIST' || err.code === 'ENOTDIR' ? `a part of its directory ${dirname(full)} is a file`
      : err.code ? `${err.code} (${err.message.replace(/^[A-Z]+: /, '').replace(/,.*$/, '')})` : err.message;
    throw new AdoptError(`cannot write ${what} ${full}: ${why}`);
  }
}

export class RecordStore {
  readonly path: string;
  private warned = new Set<string>();

  constructor(path?: string, private readonly warn: (msg: string) => void = (m) => process.stderr.write(`adopt: ${m}\n`)) {
    this.path = resolve(path ?? defaultDbPath());
  }

  /** Every tuner record in the file; corrupt lines are skipped (one warning each, naming FILE:LINE). */
  readAll(): ReadResult {
    const out: ReadResult = { records: [], warnings: [] };
    if (!existsSync(this.path)) return out;
    if (statSync(this.path).isDirectory()) throw new AdoptError(`the record store ${this.path} is a directory, not a file of records`);
    const text = readFileSync(this.path, 'utf8').split('\n');
    text.forEach((line, i) => {
      if (!line.trim()) return;
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch {
        out.warnings.push(`${this.path}:${i + 1}: corrupt record (not JSON); skipped`);
        return;
      }
      const kind = (parsed as { kind?: unknown } | null)?.kind;
      if (kind !== undefined && kind !== RECORD_KIND) return; // another tool's line (e.g. rewrite --verify's): not ours
      if (!isRecord(parsed)) {
        out.warnings.push(`${this.path}:${i + 1}: corrupt record (missing or mistyped fields); skipped`);
        return;
      }
      const why = implausible(parsed);
      if (why) {
        out.warnings.push(`${this.path}:${i + 1}: corrupt record (${why}); skipped`);
        return;
      }
      lines.set(parsed, `${this.path}:${i + 1}`);
      out.records.push(parsed);
    });
    for (const w of out.warnings) {
      if (!this.warned.has(w)) { this.warned.add(w); this.warn(w); }
    }
    return out;
  }

  /** This target's records (optionally of one kernel and template); other targets' are never returned. */
  forTarget(target: string, kernel?: string, template?: string): TuneRecord[] {
    return this.readAll().records.filter((r) => r.target === target && (!kernel || r.kernel === kernel) && (!template || r.template === template));
  }

  append(r: Omit<TuneRecord, 'kind' | 'v' | 'at'> & { at?: string }): TuneRecord {
    const full: TuneRecord = { kind: RECORD_KIND, v: 1, at: new Date().toISOString(), ...r } as TuneRecord;
    appendStoreLine(this.path, JSON.stringify(full));
    return full;
  }

}

/** Whether a file's last byte is not a newline (a torn last line); false for an empty or missing file. */

export interface Best {
  schedule: Schedule;
  median_s: number;
  /** Schedules measured in searches at this workload (re-timings of finalists not counted). */
  measurements: number;
  failed: Set<string>;
  /** Some run at this workload finished (its finalists were re-timed against the default). */
  finished: boolean;
}

/**
 * The best measured schedule per workload among `records` (this target's and template's): a
 * retimed median wins over a batch median, failures are remembered and never chosen.
 */
export function bestByWorkload(records: TuneRecord[]): Map<string, Best & { workload: Workload }> {
  const out = new Map<string, Best & { workload: Workload }>();
  for (const [key, rs] of byWorkload(records)) {
    const failed = ruledOut(rs);
    const [best] = rankedSchedules(rs, failed);
    if (!best) continue;
    out.set(key, { workload: best.record.workload, schedule: best.record.schedule, median_s: best.t, measurements: measuredCount(rs), failed, finished: rs.some(finishedRun) });
  }
  return out;
}

/** Records grouped by workload, each group in store (time) order. */
export function byWorkload(records: TuneRecord[]): Map<string, TuneRecord[]> {
  const groups = new Map<string, TuneRecord[]>();
  for (const r of records) {
    const key = workloadKey(r.workload);
    const g = groups.get(key);
    if (g) g.push(r);
    else groups.set(key, [r]);
  }
  return groups;
}

/** The schedules one workload's records rule out: one that ever gave a wrong result, and one whose
 *  latest record failed. A compile error, crash or timeout that a later success of the same
 *  schedule follows was the compiler's or the machine's, not the schedule's (a broken `$CXX` once
 *  must not rule out even the default for good). */
export function ruledOut(rs: TuneRecord[]): Set<string> {
  const latest = new Map<string, TuneRecord>();
  const out = new Set<string>();
  for (const r of rs) {
    const k = scheduleKey(r.schedule);
    latest.set(k, r);
    if (r.status === 'wrong') out.add(k);
  }
  for (const [k, r] of latest) if (r.status !== 'ok' || r.median_s === null) out.add(k);
  return out;
}

/** One workload's usable schedules, fastest first: by the finalists' interleaved re-timing where
 *  a finished run left one (it holds the default too, and one run's batch medians are not
 *  comparable with another's), else by the lowest batch median. */
export function rankedSchedules(rs: TuneRecord[], failed = ruledOut(rs)): { record: TuneRecord; t: number }[] {
  const ok = rs.filter((r) => r.status === 'ok' && r.median_s !== null && !failed.has(scheduleKey(r.schedule)));
  const retimed = ok.filter((r) => r.source === 'retime');
  const best = new Map<string, { record: TuneRecord; t: number }>();
  for (const r of retimed.length ? retimed : ok) {
    const k = scheduleKey(r.schedule);
    const prev = best.get(k);
    if (!prev || (r.median_s as number) < prev.t) best.set(k, { record: r, t: r.median_s as number });
  }
  return [...best.values()].sort((a, b) => a.t - b.t);
}

/** The measurements records stand for, as `--budget` counts them: each schedule a search measured
 *  (the finalists' re-timing is not one). */
export function measuredCount(records: TuneRecord[]): number {
  return records.filter((r) => r.source !== 'retime').length;
}

/** Per schedule, the median of its ok medians at one workload (the data a model or a reuse reads). */
export function medianBySchedule(records: TuneRecord[]): Map<string, { schedule: Schedule; median_s: number }> {
  const acc = new Map<string, { schedule: Schedule; xs: number[]; failed: boolean }>();
  for (const r of records) {
    const k = scheduleKey(r.schedule);
    const a = acc.get(k) ?? { schedule: r.schedule, xs: [], failed: false };
    if (r.status !== 'ok' || r.median_s === null) a.failed = true;
    else a.xs.push(r.median_s);
    acc.set(k, a);
  }
  const out = new Map<string, { schedule: Schedule; median_s: number }>();
  for (const [k, a] of acc) {
    if (a.failed || !a.xs.length) continue;
    const xs = a.xs.sort((x, y) => x - y);
    out.set(k, { schedule: a.schedule, median_s: xs[Math.floor(xs.length / 2)] });
  }
  return out;
}
