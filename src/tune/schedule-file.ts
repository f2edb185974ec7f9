// Schedule files (`adopt-schedules/1`): their format, read and merged here and nowhere else, and
// where `adopt rewrite --tune` puts one: `adopt-schedules.json` beside the module, which its import
// block loads. The loading lines are added to the import block's edit, so the diff, the rewritten
// text and what is written stay one and the same.
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { writeAtomically } from '../atomic-write.js';
import { AdoptError } from '../diag.js';
import { type LockOptions, acquire } from '../file-lock.js';
import type { FileResult } from '../synth/synthesize.js';
import { KERNELS_ALIAS, PREAMBLE } from '../synth/synthesize.js';
import type { Target } from './measurer.js';
import { type Schedule, type Workload, loadRegistry, scheduleKey } from './space.js';

export const SCHEDULE_FILE = 'adopt-schedules.json';

const LOADING = [
  `if ${KERNELS_ALIAS} is not None:  # adopt: schedules tuned on this machine (${SCHEDULE_FILE} beside this file)`,
  `    ${KERNELS_ALIAS}.use_schedules(__file__)`,
];

export function scheduleFileBeside(modulePath: string): string {
  return join(dirname(modulePath), SCHEDULE_FILE);
}

/** The file with its import block followed by the lines that load the schedule file. */
export function withScheduleLoading(f: FileResult): FileResult {
  if (f.error || f.rewritten === f.original || f.rewritten.includes(LOADING[1])) return f;
  const nl = f.original.includes('\r\n') ? '\r\n' : '\n';
  const block = PREAMBLE.join(nl);
  const lines = LOADING.join(nl);
  const i = f.edits.findIndex((e) => e.rule === 'import' && e.text.includes(block));
  let edits;
  if (i >= 0) {
    const e = f.edits[i];
    const at = e.text.indexOf(block) + block.length;
    edits = f.edits.map((x, j) => (j === i ? { ...x, text: x.text.slice(0, at) + nl + lines + x.text.slice(at) } : x));
  } else {
    // the original was rewritten before and has the block already: insert after it
    const at = f.original.indexOf(block);
    if (at < 0) return f;
    const end = at + block.length;
    edits = [...f.edits, { start: end, end, text: nl + lines, rule: 'import', line: f.original.slice(0, end).split('\n').length }];
  }
  let text = f.original;
  for (const e of [...edits].sort((a, b) => b.start - a.start)) text = text.slice(0, e.start) + e.text + text.slice(e.end);
  return { ...f, rewritten: text, edits };
}

/** Writes (merging) the schedule file beside each module; returns the files written. Every file
 *  is read first, so that one that is not a schedule file stops the command before any is written. */
export function writeScheduleFiles(modulePaths: string[], target: Target, entries: ScheduleEntry[]): string[] {
  const files = [...new Set(modulePaths.map(scheduleFileBeside))];
  const kernels = knownKernels();
  for (const path of files) readScheduleFile(path, kernels);
  for (const path of files) mergeScheduleFile(path, target, entries, { kernels });
  return files;
}

export interface MergeOptions {
  /** Where the message goes that another target's entries were dropped (stderr, once per message). */
  warn?: (m: string) => void;
  /** The kernels an entry may name; the registry's when not given. */
  kernels?: readonly string[];
  /** The lock's settings (tests). */
  lock?: LockOptions;
}

/** Merges `entries` into the schedule file at `path` (made, with its directory, where there is
 *  none): the read, the merge and the write are done holding the file's lock, so that two
 *  processes merging into one file at once each keep the other's entries, and the file is
 *  replaced in one rename, so that a module loading it never reads half of it. A file that is not
 *  a schedule file, or has an entry that is not one or names an unknown kernel, is refused and
 *  left as it is. */
export function mergeScheduleFile(path: string, target: Target, entries: ScheduleEntry[], o: MergeOptions = {}): void {
  // before the lock is taken: the registry may have to start Python
  const kernels = o.kernels ?? knownKernels();
  try {
    mkdirSync(dirname(resolve(path)), { recursive: true });
  } catch (e) {
    throw new AdoptError(`cannot write the schedule file ${path}: ${(e as Error).message}`);
  }
  let release: () => void;
  try {
    release = acquire(resolve(path), o.lock);
  } catch (e) {
    throw new AdoptError(`cannot write the schedule file ${path}: ${(e as Error).message}`);
  }
  try {
    const text = scheduleFileText(path, target, entries, o.warn ?? warnOnce, kernels);
    let mode: number | undefined;
    try { mode = statSync(path).mode & 0o7777; } catch { /* a new file: the default mode */ }
    try {
      writeAtomically(path, text, mode);
    } catch (e) {
      throw new AdoptError(`cannot write the schedule file ${path}: ${(e as Error).message}`);
    }
  } finally {
    release();
  }
}

const said = new Set<string>();
/** A message said once per process: a file merged twice (its text made, then merged again under
 *  the lock) would otherwise say the same thing twice. */
function warnOnce(m: string): void {
  if (said.has(m)) return;
  said.add(m);
  process.stderr.write(`adopt: ${m}\n`);
}

function knownKernels(): string[] {
  try {
    return Object.keys(loadRegistry().kernels);
  } catch (e) {
    throw new AdoptError((e as Error).message);
  }
}

export type ScheduleEntry = { kernel: string; workload: Workload; schedule: Schedule };

/** The entries of an existing schedule file, or why the file is not one. A file that does not
 *  exist or is empty holds none; anything else that is not `adopt-schedules/1` JSON is refused,
 *  never overwritten, and so is a file with an entry that is not one, or that names a kernel not
 *  in `kernels` (the registry's when left out; null: not checked): a merge would otherwise keep
 *  what no kernel reads, or drop what the user wrote, without a word. */
export function readScheduleFile(path: string, kernels: readonly string[] | null = knownKernels()): { target: Target | null; entries: ScheduleEntry[] } {
  if (!existsSync(path)) return { target: null, entries: [] };
  let text: string;
  try {
    if (statSync(path).isDirectory()) throw new AdoptError(`the schedule file ${path} is a directory`);
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if (e instanceof AdoptError) throw e;
    throw new AdoptError(`cannot read the schedule file ${path}: ${(e as Error).message}`);
  }
  if (!text.trim()) return { target: null, entries: [] };
  let d: { format?: unknown; target?: unknown; entries?: unknown };
  try {
    d = JSON.parse(text);
  } catch (e) {
    throw new AdoptError(`${path} is not a schedule file (not JSON: ${(e as Error).message.split('\n')[0]}); not overwritten: name another file or remove it`);
  }
  if (!d || typeof d !== 'object' || d.format !== SCHEDULE_FORMAT || !Array.isArray(d.entries)) {
    throw new AdoptError(`${path} is not a schedule file (no "format": "${SCHEDULE_FORMAT}" with "entries"); not overwritten: name another file or remove it`);
  }
  const known = kernels ? new Set(kernels) : null;
  (d.entries as unknown[]).forEach((e, i) => {
    const why = entryProblem(e, known);
    if (why) throw new AdoptError(`${path}: entry ${i} ${why}; not overwritten: correct or remove that entry`);
  });
  const target = d.target && typeof d.target === 'object' && typeof (d.target as Target).key === 'string' ? d.target as Target : null;
  return { target, entries: d.entries as ScheduleEntry[] };
}

const isObject = (x: unknown): x is Record<string, unknown> => !!x && typeof x === 'object' && !Array.isArray(x);

/** Why an entry of a schedule file is not one, or null. */
function entryProblem(e: unknown, known: Set<string> | null): string | null {
  if (!isObject(e) || typeof e.kernel !== 'string' || !isObject(e.workload) || !isObject(e.schedule)) {
    return 'is not a schedule entry (it takes a "kernel" name, a "workload" object and a "schedule" object)';
  }
  if (known && !known.has(e.kernel)) return `names unknown kernel '${e.kernel}' (known: ${[...known].sort().join(', ')})`;
  return null;
}

export const SCHEDULE_FORMAT = 'adopt-schedules/1';

/** The text of an `adopt-schedules/1` file the rewritten code loads: `entries` merged into the
 *  file at `path` as it is now (its kernels checked against `kernels` where given). A file of
 *  another target is replaced (its schedules were not measured here): `warn` names what goes. A
 *  file naming no target (written by hand) keeps its entries, as the kernels use them. */
export function scheduleFileText(path: string, target: Target, entries: ScheduleEntry[], warn: (m: string) => void = warnOnce, kernels: readonly string[] | null = null): string {
  const prior = readScheduleFile(path, kernels);
  let old = prior.entries;
  if (old.length && prior.target && prior.target.key !== target.key) {
    warn(`${path}: its ${old.length} entr${old.length === 1 ? 'y' : 'ies'} of target ${prior.target.key} dropped: the file now holds this target's (${target.key}) schedules`);
    old = [];
  }
  const key = (e: { kernel: string; workload: Workload }) => `${e.kernel}|${scheduleKey(e.workload)}`;
  const fresh = new Set(entries.map(key));
  const merged = [...old.filter((e) => !fresh.has(key(e))), ...entries];
  return `${JSON.stringify({ format: SCHEDULE_FORMAT, target, entries: merged }, null, 1)}\n`;
}
