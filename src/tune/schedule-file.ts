// The schedule file of a module rewritten with `adopt rewrite --tune`: `adopt-schedules.json`
// beside the module, which its import block loads. The loading lines are added to the import
// block's edit, so the diff, the rewritten text and what is written stay one and the same.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { AdoptError } from '../diag.js';
import type { FileResult } from '../synth/synthesize.js';
import { KERNELS_ALIAS, PREAMBLE } from '../synth/synthesize.js';
import type { Target } from './measurer.js';
import type { Schedule, Workload } from './space.js';
import { scheduleFileText } from './tuner.js';

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
export function writeScheduleFiles(modulePaths: string[], target: Target, entries: { kernel: string; workload: Workload; schedule: Schedule }[]): string[] {
  const files = [...new Set(modulePaths.map(scheduleFileBeside))];
  const texts = files.map((path) => scheduleFileText(path, target, entries));
  files.forEach((path, i) => writeScheduleFile(path, texts[i]));
  return files;
}

/** Writes one schedule file's text, its directory made as needed. */
export function writeScheduleFile(path: string, text: string): void {
  try {
    mkdirSync(dirname(resolve(path)), { recursive: true });
    writeFileSync(path, text);
  } catch (e) {
    throw new AdoptError(`cannot write the schedule file ${path}: ${(e as Error).message}`);
  }
}
