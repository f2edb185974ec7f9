// Appending to and rewriting a JSON-lines store that several adopt processes share (the tuner's
// records and `rewrite --verify`'s timings live in one file). Appends and rewrites take the
// store's lock: `records clear` reads, filters and replaces the file, and a line appended between
// its read and its rename would be lost with the old file.
import { appendFileSync, closeSync, fstatSync, mkdirSync, openSync, readSync } from 'node:fs';
import { dirname } from 'node:path';
import { AdoptError } from './diag.js';
import { acquire } from './file-lock.js';

/** Appends one line (a JSON record, no newline) to the store at `path`, made with its directory
 *  where there is none. A store that ends mid-line (a writer killed mid-write) gets the line ended
 *  first, or the record would be glued to the torn one and lost with it. */
export function appendStoreLine(path: string, line: string): void {
  mkdirSync(dirname(path), { recursive: true });
  underStoreLock(path, () => appendFileSync(path, `${endsMidLine(path) ? '\n' : ''}${line}\n`, { flag: 'a' }));
}

/** Runs `fn` holding the store's lock; a lock that cannot be had stops the command with why. */
export function underStoreLock<T>(path: string, fn: () => T): T {
  let release: () => void;
  try {
    release = acquire(path);
  } catch (e) {
    throw new AdoptError(`cannot update the record store ${path}: ${(e as Error).message}`);
  }
  try {
    return fn();
  } finally {
    release();
  }
}

function endsMidLine(path: string): boolean {
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    const size = fstatSync(fd).size;
    if (!size) return false;
    const last = Buffer.alloc(1);
    readSync(fd, last, 0, 1, size - 1);
    return last[0] !== 0x0a;
  } catch {
    return false;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
