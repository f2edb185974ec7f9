// The last stage: rewritten text onto disk. In place (all files or none), into an output path or
// tree, or into a mirror of a package for the benchmarks. Nothing here prints: each writer returns
// what it wrote and, for what it could not write, why.
import { accessSync, constants, copyFileSync, cpSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { commit, discard, stage, writeAtomically } from '../atomic-write.js';
import type { FileResult } from '../synth/synthesize.js';

// A file that cannot be written is a message in `errors`, never a throw: the caller reports each
// and decides the exit code.
export interface Written { written: FileResult[]; errors: string[] }

/** Why `f` cannot be replaced in place, or null. */
function cannotReplace(f: FileResult, now: string | Error): string | null {
  if (now instanceof Error) return `cannot read: ${now.message}`;
  if (now.replace(/^\uFEFF/, '') !== f.original) return 'it changed on disk since it was analysed';
  // mode bits, not access(2): root may write anything, but a read-only file says "leave me"
  if ((statSync(f.path).mode & 0o222) === 0) return 'it is read-only';
  try { accessSync(f.path, constants.W_OK); } catch { return 'it is not writable'; }
  return null;
}

/** All-or-nothing replacement. Every target is checked (unchanged since analysis, writable),
 *  then every temp file is written beside its target, then all are renamed. If anything fails
 *  before the renames, the temp files go and no file is replaced. */
export function writeInPlace(files: FileResult[], backup: boolean): Written {
  const problems: string[] = [];
  const staged: { f: FileResult; tmp: string }[] = [];
  for (const f of files) {
    let now: string | Error;
    try { now = readFileSync(f.path, 'utf8'); } catch (e) { now = e as Error; }
    const why = cannotReplace(f, now);
    if (why) { problems.push(`${f.path}: ${why}; the file is unchanged`); continue; }
    if (problems.length) continue;
    const bom = (now as string).startsWith('\uFEFF') ? '\uFEFF' : '';
    try {
      staged.push({ f, tmp: stage(f.path, bom + f.rewritten, statSync(f.path).mode & 0o7777) });
    } catch (e) {
      problems.push(`${f.path}: cannot write: ${(e as NodeJS.ErrnoException).code === 'ENOSPC' ? 'no space left on device' : (e as Error).message}; the file is unchanged`);
    }
  }
  if (problems.length) {
    for (const { tmp } of staged) discard(tmp);
    if (files.length > 1) problems.push(`no file was rewritten (--in-place replaces all ${files.length} files or none)`);
    return { written: [], errors: problems };
  }
  const written: FileResult[] = [];
  const errors: string[] = [];
  for (const { f, tmp } of staged) {
    try {
      if (backup) copyFileSync(f.path, `${f.path}.orig`);
      commit(tmp, f.path);
      written.push(f);
    } catch (e) {
      discard(tmp);
      errors.push(`${f.path}: cannot replace: ${(e as Error).message}; the file is unchanged`);
    }
  }
  return { written, errors };
}

/** The rewritten files under `out`: the file itself for one input file, else a tree mirroring
 *  the inputs' layout. */
/** Where `-o OUT` puts each rewritten file: OUT itself for one input file, else the same place in a
 *  tree under OUT. */
export function destinationsUnder(out: string, inputs: string[]): (path: string) => string {
  const single = inputs.length === 1 && statSync(inputs[0]).isFile();
  const base = single ? '' : statSync(inputs[0]).isDirectory() ? resolve(inputs[0]) : dirname(resolve(inputs[0]));
  return (path) => (single ? out : join(out, relative(base, resolve(path))));
}

export function writeTo(out: string, files: FileResult[], inputs: string[]): Written {
  const destination = destinationsUnder(out, inputs);
  const written: FileResult[] = [];
  const errors: string[] = [];
  for (const f of files) {
    const dest = destination(f.path);
    try {
      mkdirSync(dirname(dest), { recursive: true });
      writeAtomically(dest, f.rewritten);
      written.push(f);
    } catch (e) {
      errors.push(`cannot write ${dest}: ${(e as Error).message}`);
    }
  }
  return { written, errors };
}

/** A copy of the package with the rewritten files in place, so relative imports still resolve. */
export function writeMirror(pkg: string, files: FileResult[], out: string) {
  const mirror = resolve(out, 'hf199-rewritten', 'transformers');
  rmSync(resolve(out, 'hf199-rewritten'), { recursive: true, force: true });
  mkdirSync(resolve(out, 'hf199-rewritten'), { recursive: true });
  cpSync(pkg, mirror, { recursive: true });
  const changed = files.filter((f) => !f.error && f.rewritten !== f.original);
  for (const f of changed) writeFileSync(join(mirror, relative(pkg, resolve(f.path))), f.rewritten);
  const changedPaths = changed.map((f) => join(mirror, relative(pkg, resolve(f.path))));
  return { mirror, changed, changedPaths };
}
