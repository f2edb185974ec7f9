import { accessSync, constants, copyFileSync, mkdirSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync, chmodSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { AdoptError } from '../diag.js';
import type { Site } from '../match/matcher.js';
import { maxFileSizeBytes } from '../parse/limits.js';
import { diffBase, unifiedDiff } from '../synth/diff.js';
import type { FileResult } from '../synth/synthesize.js';
import { readRecords, slowerRules, type SpeedRecord } from '../verify/records.js';
import { planRewrite, synthesizePlan } from './plan.js';
import { verifiedRewrite } from './verified.js';

export { runRewrite } from './plan.js';

export interface RewriteOptions {
  rules?: string; root?: string; diff?: boolean; inPlace?: boolean; backup?: boolean; output?: string;
  json?: boolean; check?: boolean; whyNot?: boolean; target?: string; quiet?: boolean;
  verify?: boolean; config?: string; repeats?: string; learned?: boolean; maxFileSize?: string;
}

export function rewriteCommand(paths: string[], opts: RewriteOptions): number {
  const modes = [opts.inPlace, !!opts.output, opts.check].filter(Boolean).length;
  if (modes > 1) throw new AdoptError('choose one of --in-place, -o/--output and --check');
  if (opts.backup && !opts.inPlace) throw new AdoptError('--backup only goes with --in-place');
  if (opts.target && !['cpu', 'cuda'].includes(opts.target)) throw new AdoptError(`--target must be cpu or cuda, got '${opts.target}'`);
  if ((opts.config || opts.repeats) && !opts.verify) throw new AdoptError('--config and --repeats only go with --verify');
  if (opts.repeats && !/^\d+$/.test(opts.repeats)) throw new AdoptError(`--repeats must be a whole number, got '${opts.repeats}'`);
  const plan = planRewrite(paths, { ...opts, maxBytes: maxFileSizeBytes(opts.maxFileSize) });
  const target = opts.target ?? 'cpu';
  const named = new Set((opts.rules ?? '').split(',').map((x) => x.trim()));
  const learned = new Map<string, ReturnType<typeof slowerRules>>();
  let records: SpeedRecord[] | undefined; // read once, on the first site that needs them
  const measuredSlower = (s: Site): string | null => {
    if (opts.learned === false || named.has(s.rule)) return null;
    if (!learned.has(s.file)) learned.set(s.file, slowerRules(s.file, target, (records ??= readRecords())));
    const r = learned.get(s.file)!.get(s.rule);
    return r ? `measured slower here by rewrite --verify (forward x${r.forward_ratio.toFixed(2)}, train x${r.train_ratio.toFixed(2)}); name it in --rules to use it anyway` : null;
  };
  const run = opts.verify ? verifiedRewrite(plan, measuredSlower, { target, config: opts.config, repeats: Number(opts.repeats ?? 20), quiet: !!opts.json }) : synthesizePlan(plan, measuredSlower);
  const changed = run.files.filter((f) => !f.error && f.rewritten !== f.original);
  let failed = run.files.filter((f) => f.error).length;
  for (const f of run.files) if (f.error) process.stderr.write(`adopt: error: ${f.error}\n`);

  let written = changed;
  if (opts.inPlace) {
    const w = writeInPlace(changed, !!opts.backup);
    failed += w.failed;
    written = w.written;
  } else if (opts.output) failed += writeTo(opts.output, changed, paths);

  if (opts.json) {
    process.stdout.write(JSON.stringify({
      sites: run.sites,
      ...(opts.whyNot ? { near_misses: run.nearMisses } : {}),
      files: run.files.map((f) => ({ path: f.path, changed: f.rewritten !== f.original, error: f.error ?? null })),
      ...(run.verification ? { verification: run.verification } : {}),
    }, null, 1) + '\n');
  } else if (!opts.inPlace && !opts.output && !opts.check) {
    for (const f of changed) {
      process.stdout.write(unifiedDiff(f.path, f.original, f.edits, opts.root));
      const base = diffBase(f.path, opts.root);
      if (base !== process.cwd()) process.stderr.write(`adopt: note: the diff of ${f.path} is relative to ${base}; apply it there (git -C ${base} apply)\n`);
    }
  }
  if (!opts.json) {
    if (opts.whyNot) for (const n of run.nearMisses) process.stderr.write(`${n.file}:${n.line}:${n.col}: ${n.rule}: not a site: ${n.reason}\n`);
    for (const s of run.sites) if (s.decision === 'skipped' && (opts.whyNot || !opts.quiet)) process.stderr.write(`${s.file}:${s.lines[0]}: ${s.rule}: found, not rewritten: ${s.reason}\n`);
    // what was written, when writing: a file left unchanged does not count
    const writtenPaths = new Set(written.map((f) => f.path));
    const n = run.sites.filter((s) => s.decision === 'rewritten' && (!opts.inPlace || writtenPaths.has(s.file))).length;
    process.stderr.write(`adopt: ${run.sites.length} site(s) found, ${n} rewritten in ${written.length} file(s)\n`);
  }
  if (failed) return 2;
  if (opts.check) return changed.length ? 1 : 0;
  return 0;
}

/** All-or-nothing replacement. Every target is checked (unchanged since analysis, writable),
 *  then every temp file is written beside its target, then all are renamed. If anything fails
 *  before the renames, the temp files go and no file is replaced. Returns the files written. */
export function writeInPlace(files: FileResult[], backup: boolean): { failed: number; written: FileResult[] } {
  const problems: string[] = [];
  const staged: { f: FileResult; tmp: string }[] = [];
  const complain = (f: FileResult, why: string) => problems.push(`${f.path}: ${why}`);
  for (const f of files) {
    let now: string;
    try { now = readFileSync(f.path, 'utf8'); } catch (e) { complain(f, `cannot read: ${(e as Error).message}`); continue; }
    if (now.replace(/^\uFEFF/, '') !== f.original) { complain(f, 'it changed on disk since it was analysed'); continue; }
    // mode bits, not access(2): root may write anything, but a read-only file says "leave me"
    if ((statSync(f.path).mode & 0o222) === 0) { complain(f, 'it is read-only'); continue; }
    try { accessSync(f.path, constants.W_OK); } catch { complain(f, 'it is not writable'); continue; }
    if (problems.length) continue;
    const bom = now.startsWith('\uFEFF') ? '\uFEFF' : '';
    const tmp = join(dirname(f.path), `.${f.path.split('/').pop()}.adopt-${process.pid}.tmp`);
    try {
      writeFileSync(tmp, bom + f.rewritten);
      chmodSync(tmp, statSync(f.path).mode & 0o7777);
      staged.push({ f, tmp });
    } catch (e) {
      try { unlinkSync(tmp); } catch { /* not created */ }
      complain(f, `cannot write: ${(e as NodeJS.ErrnoException).code === 'ENOSPC' ? 'no space left on device' : (e as Error).message}`);
    }
  }
  if (problems.length) {
    for (const { tmp } of staged) { try { unlinkSync(tmp); } catch { /* already gone */ } }
    for (const p of problems) process.stderr.write(`adopt: error: ${p}; the file is unchanged\n`);
    if (files.length > 1) process.stderr.write(`adopt: no file was rewritten (--in-place replaces all ${files.length} files or none)\n`);
    return { failed: problems.length, written: [] };
  }
  const written: FileResult[] = [];
  let failed = 0;
  for (const { f, tmp } of staged) {
    try {
      if (backup) copyFileSync(f.path, `${f.path}.orig`);
      renameSync(tmp, f.path);
      written.push(f);
    } catch (e) {
      try { unlinkSync(tmp); } catch { /* already gone */ }
      process.stderr.write(`adopt: error: ${f.path}: cannot replace: ${(e as Error).message}; the file is unchanged\n`);
      failed++;
    }
  }
  return { failed, written };
}

function writeTo(out: string, files: FileResult[], inputs: string[]): number {
  const single = inputs.length === 1 && statSync(inputs[0]).isFile();
  let failed = 0;
  for (const f of files) {
    const dest = single ? out : join(out, relative(statSync(inputs[0]).isDirectory() ? resolve(inputs[0]) : dirname(resolve(inputs[0])), resolve(f.path)));
    const tmp = `${dest}.adopt-${process.pid}.tmp`;
    try {
      mkdirSync(dirname(dest), { recursive: true });
      writeFileSync(tmp, f.rewritten);
      renameSync(tmp, dest);
    } catch (e) {
      try { unlinkSync(tmp); } catch { /* not created */ }
      process.stderr.write(`adopt: error: cannot write ${dest}: ${(e as Error).message}\n`);
      failed++;
    }
  }
  return failed;
}
