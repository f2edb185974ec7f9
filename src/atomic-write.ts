// Writing a file so that a reader sees the old text or the new one, never part of either: the
// text goes to a temporary file beside the target (the same directory, so the same file system)
// and is renamed onto it. What a failure means is the caller's to say (an error for the user, a
// message in a list, nothing for a cache): these functions throw, always with the temporary
// file removed. Depends on nothing of adopt's, so any layer may use it.
import { chmodSync, closeSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/** The temporary file beside `target`: hidden, and named by the process, so that two processes
 *  writing one target never share it. */
export function tempBeside(target: string): string {
  return join(dirname(target), `.${basename(target)}.adopt-${process.pid}.tmp`);
}

/** Removes a temporary file that will not be renamed (or was never made). */
export function discard(tmp: string): void {
  try { rmSync(tmp, { force: true }); } catch { /* not removable: nothing more to undo */ }
}

/** Writes `text` (one string, or pieces written as they come) to `path`, in place: a temporary
 *  file, or a sink such as the null device. */
export function writePieces(path: string, text: string | Iterable<string>): void {
  const fd = openSync(path, 'w');
  try {
    for (const piece of typeof text === 'string' ? [text] : text) writeSync(fd, piece);
  } finally {
    closeSync(fd);
  }
}

/** Writes `text` (one string, or pieces written as they come) to the temporary file beside
 *  `target` (with permission bits `mode`, when given) and returns its path, for `commit`; on
 *  failure, throws with it removed. */
export function stage(target: string, text: string | Iterable<string>, mode?: number): string {
  const tmp = tempBeside(target);
  try {
    writePieces(tmp, text);
    if (mode !== undefined) chmodSync(tmp, mode);
  } catch (e) {
    discard(tmp);
    throw e;
  }
  return tmp;
}

/** Renames a staged file onto its target; on failure, throws with the staged file removed and
 *  the target as it was. */
export function commit(tmp: string, target: string): void {
  try {
    renameSync(tmp, target);
  } catch (e) {
    discard(tmp);
    throw e;
  }
}

/** `stage` then `commit`: the whole write of one file. */
export function writeAtomically(target: string, text: string | Iterable<string>, mode?: number): void {
  commit(stage(target, text, mode), target);
}
