// The last stage: rewritten text onto disk. In place (all files or none), into an output path or
// tree, or into a mirror of a package for the benchmarks. Nothing here prints: each writer returns
// what it wrote and, for what it could not write, why.
import { accessSync, constants, copyFileSync, cpSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, realpathSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { commit, discard, stage, writeAtomically } from '../atomic-write.js';
import type { FileResult } from '../synth/synthesize.js';

// A file that cannot be written is a message in `errors`, never a throw: the caller reports each
// and decides the exit code.
export interface Written { written: FileResult[]; errors: string[]; copied?: string[] }

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

/** Whether `path` is `dir` or lies under it. */
function isWithin(path: string, dir: string): boolean {
  const r = relative(dir, path);
  return r === '' || (r !== '..' && !r.startsWith(`..${sep}`) && !isAbsolute(r));
}

/** The deepest directory holding every input: a directory counts as itself, a file as the
 *  directory it is in. */
export function commonRoot(inputs: string[]): string {
  const dirs = inputs.map((p) => (statSync(p).isDirectory() ? resolve(p) : dirname(resolve(p))));
  let root = dirs[0];
  for (const d of dirs.slice(1)) while (!isWithin(d, root)) root = dirname(root);
  return root;
}

/** Where `-o OUT` puts each file: OUT itself for one input file, else the file's place relative to
 *  the inputs' common root, under OUT. */
export function destinationsUnder(out: string, inputs: string[]): (path: string) => string {
  const single = inputs.length === 1 && statSync(inputs[0]).isFile();
  const root = single ? '' : commonRoot(inputs);
  return (path) => (single ? out : join(out, relative(root, resolve(path))));
}

// a package's compiled caches belong to the original sources; version control is not the package's
const NOT_COPIED = new Set(['__pycache__', '.git', '.hg', '.svn']);

/** Every file under a directory input, the folders of NOT_COPIED left out. */
function filesUnder(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) { if (!NOT_COPIED.has(e.name)) walk(p); }
      else if (e.isFile() || e.isSymbolicLink()) out.push(p);
    }
  };
  walk(dir);
  return out;
}

/** The file's own path, symbolic links followed where it exists. */
function realOrResolved(path: string): string {
  try { return realpathSync(path); } catch { return resolve(path); }
}

/** `-o OUT`: the rewritten files written under OUT (OUT itself for one input file), and for a
 *  directory input every other file under it copied, so that OUT holds a complete copy of the
 *  package, importable as the original. Every destination is checked first: one outside OUT, one
 *  that is an input file, or OUT inside a directory input, and nothing is written. */
export function writeTo(out: string, files: FileResult[], inputs: string[]): Written {
  const destination = destinationsUnder(out, inputs);
  const outDir = inputs.length === 1 && statSync(inputs[0]).isFile() ? dirname(resolve(out)) : resolve(out);
  const rewritten = new Set(files.map((f) => resolve(f.path)));
  // a directory given inside another is copied once
  const copies = [...new Map(inputs.filter((p) => statSync(p).isDirectory())
    .flatMap((d) => filesUnder(d)).filter((p) => !rewritten.has(resolve(p))).map((p) => [resolve(p), p])).values()];
  const sources = new Set([...inputs.filter((p) => statSync(p).isFile()), ...files.map((f) => f.path), ...copies].map(realOrResolved));
  const problems: string[] = [];
  for (const d of inputs.filter((p) => statSync(p).isDirectory())) {
    if (isWithin(realOrResolved(out), realOrResolved(d))) problems.push(`-o ${out} is inside the input directory ${d}: choose a directory outside it`);
  }
  // OUT above an input would mirror the inputs into the tree that holds them, over whatever files
  // sit there under the same names (`rewrite pkg -o .` writes pkg's README.md over ./README.md)
  if (!(inputs.length === 1 && statSync(inputs[0]).isFile())) {
    for (const p of inputs) {
      if (isWithin(realOrResolved(p), realOrResolved(out))) problems.push(`-o ${out} holds the input ${p}: choose a directory apart from the inputs`);
    }
  }
  const claimed = new Map<string, string>();
  for (const p of [...files.map((f) => f.path), ...copies]) {
    const dest = destination(p);
    const other = claimed.get(resolve(dest));
    claimed.set(resolve(dest), p);
    if (!isWithin(resolve(dest), outDir)) problems.push(`${p}: its output ${dest} would be outside ${out}`);
    else if (sources.has(realOrResolved(dest))) problems.push(`${p}: its output ${dest} is an input file (--in-place is the way to rewrite inputs)`);
    // one input file, but a module it uses was rewritten too: -o names a file, not a tree
    else if (other) problems.push(`${p} was rewritten with ${other}, and -o names one file for both (give the package directory as input and -o a directory)`);
  }
  if (problems.length) return { written: [], errors: [...new Set(problems), `nothing was written to ${out}`] };
  const errors: string[] = [];
  const copied: string[] = [];
  for (const p of copies) {
    const dest = destination(p);
    try {
      mkdirSync(dirname(dest), { recursive: true });
      // a link is copied as the link (a linked folder too), so the copy resolves as the package does
      if (lstatSync(p).isSymbolicLink()) {
        rmSync(dest, { force: true });
        symlinkSync(readlinkSync(p), dest);
      } else copyFileSync(p, dest);
      copied.push(dest);
    } catch (e) {
      errors.push(`cannot copy ${p} to ${dest}: ${(e as Error).message}`);
    }
  }
  const written: FileResult[] = [];
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
  return { written, errors, copied };
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
