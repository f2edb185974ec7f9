import { closeSync, openSync, renameSync, writeSync } from 'node:fs';
import { dirname, basename, join } from 'node:path';

/** Writes to stdout, or atomically to a file (temp file + rename), so no reader sees half a file.
 *  The text may come in pieces, written as they come. */
export function writeOutput(path: string | undefined, text: string | Iterable<string>): void {
  const pieces = typeof text === 'string' ? [text] : text;
  if (!path || path === '-') {
    for (const piece of pieces) process.stdout.write(piece);
    return;
  }
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  const fd = openSync(tmp, 'w');
  try {
    for (const piece of pieces) writeSync(fd, piece);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}
