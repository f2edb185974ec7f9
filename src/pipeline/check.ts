// One meaning of "verified" for every path that checks a rewritten file in torch: the file's
// classes are built tiny from the original and the rewrite and compared (src/verify); a helper
// module with no classes of its own is checked through the package files that use it. The verdict
// of one file's check is read the same way by `rewrite --verify` and `bench DIR --verify`.
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { findPythonFiles } from '../analysis/project.js';
import { checkPaths, checkVariants, type ClassResult, type FileCheckOptions, type FileCheckResult } from '../verify/file.js';

export type VerifyStatus = 'verified' | 'mismatch' | 'not_runnable';

/** Original and rewritten time of one phase, summed over the classes (or the model) that ran. */
export interface PhaseTiming { original_s: number; rewritten_s: number }

/** What one file's (or one model's) check came to. */
export interface Verdict {
  status: VerifyStatus;
  reason?: string;
  problems?: string[];
  timings?: { eval?: PhaseTiming; train?: PhaseTiming };
}

/** The top directory of the package a file is in (the highest parent with an __init__.py). */
function packageRoot(file: string): string | undefined {
  let top: string | undefined;
  for (let d = dirname(resolve(file)); existsSync(join(d, '__init__.py')); d = dirname(d)) top = d;
  return top;
}

/** Whether a file's own check found nothing of its own to run: it imported and has no model class,
 *  so it is checked through its package's users. A rewrite that does not import is a result of
 *  its own (a mismatch), never a reason to check every other file of the package. */
export function isHelperModule(direct: FileCheckResult): boolean {
  return direct.ok && direct.results.length === 0;
}

/**
 * Checks rewritten texts of `file` (variant name → text). A file with no model classes of its own
 * (a helper module) is checked through the files of its package that use it: each variant is
 * written into a renamed copy of the package, and every other file's classes are built from the
 * copy and compared with the originals.
 */
export function checkFile(file: string, variants: Record<string, string>, opts: FileCheckOptions): FileCheckResult {
  const direct = checkVariants(file, variants, opts);
  const top = packageRoot(file);
  if (!top || !isHelperModule(direct)) return direct;
  const tmp = mkdtempSync(join(tmpdir(), 'adopt-package-'));
  try {
    const copies: Record<string, string> = {};
    for (const [name, text] of Object.entries(variants)) {
      copies[name] = join(tmp, name, `adopt_rewritten_${basename(top)}`);
      mkdirSync(dirname(copies[name]), { recursive: true });
      cpSync(top, copies[name], { recursive: true, filter: (s) => !s.includes('__pycache__') });
      writeFileSync(join(copies[name], relative(top, resolve(file))), text);
    }
    const results: ClassResult[] = [];
    let torch = '';
    for (const user of findPythonFiles(top).filter((u) => u !== resolve(file) && basename(u) !== '__init__.py')) {
      const paths = Object.fromEntries(Object.entries(copies).map(([name, dir]) => [name, join(dir, relative(top, user))]));
      const r = checkPaths(user, paths, { ...opts, ownPackage: true });
      if (!r.ok) continue;
      torch = r.torch;
      results.push(...r.results.filter((x) => x.class).map((x) => ({ ...x, class: `${relative(top, user)}:${x.class}` })));
    }
    return { ok: true, results, torch };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** The first mismatching class and its first problems, in one line. */
export function problemOf(results: ClassResult[]): string | undefined {
  const bad = results.find((r) => r.status === 'mismatch');
  return bad ? `${bad.class ?? 'the file'}: ${(bad.problems ?? [bad.reason ?? '']).slice(0, 2).join('; ')}` : undefined;
}

/** A file's check read as one verdict: any mismatching class makes it a mismatch; otherwise it is
 *  verified when at least one class ran, and not runnable when none did. */
export function verdictOf(check: FileCheckResult): Verdict {
  if (!check.ok) return { status: 'not_runnable', reason: check.error };
  const bad = check.results.filter((x) => x.status === 'mismatch');
  const ok = check.results.filter((x) => x.status === 'verified');
  if (bad.length) return { status: 'mismatch', problems: bad.map((x) => `${x.class}: ${(x.problems ?? []).slice(0, 2).join('; ')}`) };
  if (!ok.length) return { status: 'not_runnable', reason: check.results.map((x) => `${x.class}: ${x.reason}`).slice(0, 2).join('; ') || 'no nn.Module class in the file to build' };
  const sum = (k: 'forward' | 'train'): PhaseTiming | undefined => {
    const t = ok.map((x) => x.timings?.[k]).filter((x) => x !== undefined);
    return t.length ? { original_s: t.reduce((a, x) => a + x.original_s, 0), rewritten_s: t.reduce((a, x) => a + x.rewritten_s, 0) } : undefined;
  };
  const timings = { eval: sum('forward'), train: sum('train') };
  return { status: 'verified', reason: `${ok.length}/${check.results.length} classes verified`, ...(timings.eval || timings.train ? { timings } : {}) };
}
