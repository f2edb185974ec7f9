// Selective reset of the record store: `adopt records clear --kernel K` forgets one kernel's
// tuning, `--rule R` one rule's `rewrite --verify` timings, `--target T` / `--file F` narrow
// further. The store is rewritten through a temporary file and one rename, so a reader never
// sees half a file; lines the filter does not select (other kinds, corrupt lines) are kept as
// they were, byte for byte.
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { resolve } from 'node:path';
import { writeAtomically } from '../atomic-write.js';
import { AdoptError } from '../diag.js';
import { underStoreLock } from '../line-store.js';

export interface ClearFilter {
  kernel?: string;
  rule?: string;
  target?: string;
  file?: string;
}

export interface ClearResult {
  tuning: number;
  speed: number;
  kept: number;
}

function hasFilter(f: ClearFilter): boolean {
  return !!(f.kernel || f.rule || f.target || f.file);
}

/** Whether a parsed line is selected: a tuning record (`kind: tune`) or a speed record
 *  (`kind: rule-speed`) whose fields equal every given filter value. */
function selected(o: Record<string, unknown>, f: ClearFilter): 'tuning' | 'speed' | null {
  const kind = o.kind === 'tune' ? 'tuning' : o.kind === 'rule-speed' ? 'speed' : null;
  if (!kind) return null;
  // a kernel filter names tuning records only, a rule or file filter speed records only
  if (kind === 'tuning' && (f.rule || f.file)) return null;
  if (kind === 'speed' && f.kernel) return null;
  if (f.kernel && o.kernel !== f.kernel) return null;
  if (f.rule && o.rule !== f.rule) return null;
  if (f.file && o.file !== resolve(f.file)) return null;
  if (f.target && o.target !== f.target) return null;
  return kind;
}

/** Removes the selected records; with no filter, every tuning and speed record (the file goes
 *  when nothing else is left in it). */
export function clearRecords(path: string, f: ClearFilter): ClearResult {
  if (!existsSync(path)) return { tuning: 0, speed: 0, kept: 0 };
  // appenders wait while the store is read and replaced: a line added in between would go with the old file
  return underStoreLock(path, () => clearUnderLock(path, f));
}

function clearUnderLock(path: string, f: ClearFilter): ClearResult {
  const out: ClearResult = { tuning: 0, speed: 0, kept: 0 };
  if (!existsSync(path)) return out;
  const keep: string[] = [];
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    let o: unknown = null;
    try { o = JSON.parse(line); } catch { /* a corrupt line is never selected */ }
    const kind = o && typeof o === 'object' ? selected(o as Record<string, unknown>, f) : null;
    if (kind) out[kind]++;
    else keep.push(line);
  }
  out.kept = keep.length;
  if (!hasFilter(f) && !keep.length) {
    try {
      rmSync(path);
    } catch (e) {
      throw new AdoptError(`cannot remove the record store ${path}: ${(e as Error).message}`);
    }
    return out;
  }
  // a store that cannot be rewritten is the user's error: the command stops, the store unchanged
  try {
    writeAtomically(path, keep.length ? `${keep.join('\n')}\n` : '');
  } catch (e) {
    throw new AdoptError(`cannot rewrite the record store ${path}: ${(e as Error).message}`);
  }
  return out;
}
