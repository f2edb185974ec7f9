// Removes what tempProject made once a test file is done, so a run leaves no directories behind.
import { chmodSync, lstatSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { tempDirs } from './ir.js';

/** Gives the owner write permission back on everything under `path` (tests make files and
 *  directories read-only); done in process, as the unit tier starts no processes. */
function writable(path: string): void {
  let st;
  try { st = lstatSync(path); } catch { return; }
  if (st.isSymbolicLink()) return;
  try { chmodSync(path, st.mode | (st.isDirectory() ? 0o700 : 0o600)); } catch { return; }
  if (st.isDirectory()) for (const e of readdirSync(path)) writable(join(path, e));
}

afterAll(() => {
  for (const dir of tempDirs.splice(0)) {
    writable(dir);
    rmSync(dir, { recursive: true, force: true });
  }
});
