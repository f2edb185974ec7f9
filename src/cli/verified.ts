// `rewrite --verify`: every rule's rewrite of a file is checked on its own in torch (tiny model,
// strict state-dict load, outputs and gradients) and timed against the original. A rule whose
// rewrite mismatches is withheld from that file; one measured slower is withheld and recorded, so
// later rewrites leave it out too. What is kept is then checked together once more.
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { findPythonFiles } from '../analysis/project.js';
import { AdoptError } from '../diag.js';
import { runPython } from '../verify/python.js';
import type { Site } from '../match/matcher.js';
import { checkPaths, checkVariants, speedOf, type ClassResult, type FileCheckOptions, type FileCheckResult } from '../verify/file.js';
import { appendRecord, isSlower } from '../verify/records.js';
import { synthesizePlan, type RewritePlan, type RewriteRun } from './plan.js';

export interface RuleVerdict {
  rule: string;
  verdict: 'kept' | 'mismatch' | 'not_runnable' | 'slower';
  forward_ratio?: number;
  train_ratio?: number;
  detail?: string;
}

export interface FileVerification {
  file: string;
  rules: RuleVerdict[];
  /** The final rewrite of the file (all kept rules together), per class. */
  classes: ClassResult[];
  status: 'verified' | 'mismatch' | 'not_runnable' | 'unchanged';
  error?: string;
}

export interface VerifyRunOptions { target: string; config?: string; repeats: number; quiet: boolean }

/** The top directory of the package a file is in (the highest parent with an __init__.py). */
function packageRoot(file: string): string | undefined {
  let top: string | undefined;
  for (let d = dirname(resolve(file)); existsSync(join(d, '__init__.py')); d = dirname(d)) top = d;
  return top;
}

/**
 * A file with no model classes of its own (a helper module) is checked through the files of its
 * package that use it: each variant is written into a renamed copy of the package, and every
 * other file's classes are built from the copy and compared with the originals.
 */
function checkFile(file: string, variants: Record<string, string>, opts: FileCheckOptions): FileCheckResult {
  const direct = checkVariants(file, variants, opts);
  const top = packageRoot(file);
  if (!direct.ok || direct.results.some((r) => r.class) || !top) return direct;
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

const say = (quiet: boolean, s: string) => { if (!quiet) process.stderr.write(`${s}\n`); };

function problemOf(results: ClassResult[]): string | undefined {
  const bad = results.find((r) => r.status === 'mismatch');
  return bad ? `${bad.class ?? 'the file'}: ${(bad.problems ?? [bad.reason ?? '']).slice(0, 2).join('; ')}` : undefined;
}

/** Verification that cannot run at all is an error (exit 2, nothing written), never a rewrite
 *  that nobody checked. */
function requireHarness(): void {
  const r = runPython(['-c', 'import torch'], { timeoutMs: 120_000 });
  if (!r.ok || r.status !== 0) {
    const why = r.ok ? (r.stderr.trim().split('\n').pop() ?? `exit ${r.status}`) : r.error;
    throw new AdoptError(`--verify needs Python with torch, and it cannot run (${why}); run scripts/setup-python.sh or set ADOPT_PYTHON. Nothing was written`);
  }
}

export function verifiedRewrite(plan: RewritePlan, withhold: (s: Site) => string | null, opts: VerifyRunOptions): RewriteRun {
  requireHarness();
  const first = synthesizePlan(plan, withhold);
  const kept = new Set<string>(); // `${file}\0${rule}` verified alone
  const rejected = new Map<string, string>(); // `${file}\0${rule}` -> reason
  const report: FileVerification[] = [];
  for (const f of first.files) {
    if (f.error || f.rewritten === f.original) continue;
    const rules = [...new Set(first.sites.filter((s) => s.file === f.path && s.decision === 'rewritten').map((s) => s.rule))].sort();
    const variants: Record<string, string> = {};
    for (const rule of rules) {
      const one = synthesizePlan(plan, (s) => (s.file === f.path && s.rule === rule ? withhold(s) : 'other'));
      const file = one.files.find((x) => x.path === f.path);
      if (file && !file.error) variants[rule] = file.rewritten;
    }
    say(opts.quiet, `adopt: verifying ${f.path}: ${rules.join(', ')} (each rule alone, then together)`);
    const check = checkFile(f.path, variants, { config: opts.config, repeats: opts.repeats });
    const verdicts: RuleVerdict[] = [];
    if (!check.ok) {
      for (const rule of rules) {
        verdicts.push({ rule, verdict: 'not_runnable', detail: check.error });
        rejected.set(`${f.path}\0${rule}`, `not verified: ${check.error}`);
      }
      report.push({ file: f.path, rules: verdicts, classes: [], status: 'not_runnable', error: check.error });
      continue;
    }
    for (const rule of rules) {
      const results = check.results.filter((r) => r.variant === rule);
      const mismatch = problemOf(results);
      const ran = results.filter((r) => r.status === 'verified');
      const speed = speedOf(results);
      let v: RuleVerdict;
      if (mismatch) v = { rule, verdict: 'mismatch', detail: mismatch };
      else if (!ran.length) v = { rule, verdict: 'not_runnable', detail: results.map((r) => `${r.class}: ${r.reason}`).slice(0, 3).join('; ') || 'no class to run' };
      else if (speed && isSlower(speed.forwardBest, speed.trainBest)) v = { rule, verdict: 'slower', forward_ratio: speed.forward, train_ratio: speed.train };
      else v = { rule, verdict: 'kept', ...(speed ? { forward_ratio: speed.forward, train_ratio: speed.train } : {}) };
      if (speed) appendRecord({ file: resolve(f.path), rule, target: opts.target, torch: check.torch, forward_ratio: speed.forward, train_ratio: speed.train, slower: v.verdict === 'slower' });
      verdicts.push(v);
      if (v.verdict === 'kept') kept.add(`${f.path}\0${rule}`);
      const ratios = speed ? ` (forward x${speed.forward.toFixed(2)}, train x${speed.train.toFixed(2)})` : '';
      if (v.verdict !== 'kept') {
        rejected.set(`${f.path}\0${rule}`, v.verdict === 'mismatch' ? `verification mismatch: ${v.detail}` : v.verdict === 'slower' ? `measured slower by --verify${ratios}` : `not verified: ${v.detail}`);
      }
      say(opts.quiet, `  ${rule}: ${v.verdict}${ratios}${v.detail ? `: ${v.detail.slice(0, 200)}` : ''}; ${ran.length}/${results.length} classes verified`);
    }
    report.push({ file: f.path, rules: verdicts, classes: [], status: 'unchanged' });
  }

  // a site that only becomes a rewrite once another rule is withheld (a softmax the attention
  // rule covered) was never verified: it is withheld too
  const withheld = (s: Site) => withhold(s) ?? rejected.get(`${s.file}\0${s.rule}`) ?? (kept.has(`${s.file}\0${s.rule}`) ? null : 'not verified: it became a rewrite only after another rule was withheld');
  const final = synthesizePlan(plan, withheld);
  // The kept rules together: rewrites that each verify alone can still interact.
  for (const entry of report) {
    const f = final.files.find((x) => x.path === entry.file);
    if (!f || f.error || f.rewritten === f.original) continue;
    const check = checkFile(f.path, { together: f.rewritten }, { config: opts.config });
    if (!check.ok) { entry.status = 'not_runnable'; entry.error = check.error; continue; }
    entry.classes = check.results;
    const mismatch = problemOf(check.results);
    entry.status = mismatch ? 'mismatch' : check.results.some((r) => r.status === 'verified') ? 'verified' : 'not_runnable';
    if (mismatch) {
      // nothing unproven is handed back: the file keeps its original text
      f.error = `${f.path}: the verified rules do not verify together (${mismatch}); nothing written for this file`;
      f.rewritten = f.original;
    }
    say(opts.quiet, `adopt: ${f.path}: ${entry.status} (${check.results.filter((r) => r.status === 'verified').length}/${check.results.length} classes)`);
  }
  for (const s of final.sites) {
    const entry = report.find((e) => e.file === s.file);
    if (s.decision === 'rewritten' && entry?.status === 'verified') s.reason = 'guarded rewrite, verified in torch';
  }
  return { ...final, verification: report };
}
