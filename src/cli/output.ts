import { writeAtomically } from '../atomic-write.js';
import { AdoptError } from '../diag.js';

/** Writes to stdout, or atomically to a file (temp file + rename), so no reader sees half a file.
 *  The text may come in pieces, written as they come. A file that cannot be written is the
 *  user's error: the command stops, saying which. */
export function writeOutput(path: string | undefined, text: string | Iterable<string>): void {
  if (!path || path === '-') {
    for (const piece of typeof text === 'string' ? [text] : text) process.stdout.write(piece);
    return;
  }
  try {
    writeAtomically(path, text);
  } catch (e) {
    throw new AdoptError(`cannot write ${path}: ${(e as Error).message}`);
  }
}
