import { renameSync, writeFileSync } from 'node:fs';
import { dirname, basename, join } from 'node:path';

/** Writes to stdout, or atomically to a file (temp file + rename), so no reader sees half a file. */
export function writeOutput(path: string | undefined, text: string): void {
  if (!path || path === '-') { process.stdout.write(text); return; }
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}
