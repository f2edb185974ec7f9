// `rewrite --verify`: every rule's rewrite of a file is checked on its own in torch (tiny model,
// strict state-dict load, outputs and gradients) and timed against the original. A rule whose
// rewrite mismatches is withheld from that file; one measured slower is withheld and recorded, so
// later rewrites leave it out too. What is kept is then checked together once more.
import { resolve } from 'node:path';
import type { Site } from '../match/matcher.js';
import { checkVariants, speedOf, type ClassResult } from '../verify/file.js';
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

const say = (quiet: boolean, s: string) => { if (!quiet) process.stderr.write(`${s}\n`); };

function problemOf(results: ClassResult[]): string | undefined {
  const bad = results.find((r) => r.status === 'mismatch');
  return bad ? `${bad.class ?? 'the file'}: ${(bad.problems ?? [bad.reason ?? '']).slice(0, 2).join('; ')}` : undefined;
}

export function verifiedRewrite(plan: RewritePlan, withhold: (s: Site) => string | null, opts: VerifyRunOptions): RewriteRun {
  const first = synthesizePlan(plan, withhold);
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
    const check = checkVariants(f.path, variants, { config: opts.config, repeats: opts.repeats });
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
      else if (speed && isSlower(speed.forward, speed.train)) v = { rule, verdict: 'slower', forward_ratio: speed.forward, train_ratio: speed.train };
      else v = { rule, verdict: 'kept', ...(speed ? { forward_ratio: speed.forward, train_ratio: speed.train } : {}) };
      if (speed) appendRecord({ file: resolve(f.path), rule, target: opts.target, torch: check.torch, forward_ratio: speed.forward, train_ratio: speed.train, slower: v.verdict === 'slower' });
      verdicts.push(v);
      const ratios = speed ? ` (forward x${speed.forward.toFixed(2)}, train x${speed.train.toFixed(2)})` : '';
      if (v.verdict !== 'kept') {
        rejected.set(`${f.path}\0${rule}`, v.verdict === 'mismatch' ? `verification mismatch: ${v.detail}` : v.verdict === 'slower' ? `measured slower by --verify${ratios}` : `not verified: ${v.detail}`);
      }
      say(opts.quiet, `  ${rule}: ${v.verdict}${ratios}${v.detail ? `: ${v.detail.slice(0, 200)}` : ''}; ${ran.length}/${results.length} classes verified`);
    }
    report.push({ file: f.path, rules: verdicts, classes: [], status: 'unchanged' });
  }

  const withheld = (s: Site) => withhold(s) ?? rejected.get(`${s.file}\0${s.rule}`) ?? null;
  const final = synthesizePlan(plan, withheld);
  // The kept rules together: rewrites that each verify alone can still interact.
  for (const entry of report) {
    const f = final.files.find((x) => x.path === entry.file);
    if (!f || f.error || f.rewritten === f.original) continue;
    const check = checkVariants(f.path, { together: f.rewritten }, { config: opts.config });
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
