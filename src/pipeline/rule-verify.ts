// Verification that keeps or drops rewrites (`rewrite --verify`): every rule's rewrite of a file is
// checked on its own in torch (tiny model, strict state-dict load, outputs and gradients) and timed
// against the original. A rule whose rewrite mismatches is withheld from that file; one measured
// slower is withheld and recorded, so later rewrites leave it out too. What is kept is then checked
// together once more.
import { resolve } from 'node:path';
import { AdoptError } from '../diag.js';
import type { Site } from '../match/matcher.js';
import type { FileResult } from '../synth/synthesize.js';
import { speedOf, type FileCheck } from '../verify/file.js';
import { runPython } from '../verify/python.js';
import { appendRecord, isSlower } from '../verify/records.js';
import { checkFile, problemOf, verdictOf } from './check.js';
import { synthesizePlan, type RewritePlan } from './plan.js';
import type { FileVerification, RewriteRun, RuleVerdict, Withhold } from './types.js';

/** The device verification measures on: the harness runs models on the CPU. */
export const MEASURED_ON = 'cpu';

export interface RuleVerifyOptions { config?: string; repeats: number; say: (line: string) => void }

/** Verification that cannot run at all is an error (exit 2, nothing written), never a rewrite
 *  that nobody checked. */
function requireHarness(): void {
  const r = runPython(['-c', 'import torch'], { timeoutMs: 120_000 });
  if (!r.ok || r.status !== 0) {
    const why = r.ok ? (r.stderr.trim().split('\n').pop() ?? `exit ${r.status}`) : r.error;
    throw new AdoptError(`--verify needs Python with torch, and it cannot run (${why}); run scripts/setup-python.sh or set ADOPT_PYTHON. Nothing was written`);
  }
}

const ratiosOf = (v: RuleVerdict) => (v.forward_ratio !== undefined ? ` (forward x${v.forward_ratio.toFixed(2)}, train x${v.train_ratio!.toFixed(2)})` : '');

/** One rule's verdict from its variant's classes; speed is recorded for later runs. */
function judgeRule(file: string, rule: string, check: FileCheck): RuleVerdict {
  const results = check.results.filter((r) => r.variant === rule);
  const mismatch = problemOf(results);
  const ran = results.filter((r) => r.status === 'verified');
  const speed = speedOf(results);
  const ratios = speed ? { forward_ratio: speed.forward, train_ratio: speed.train } : {};
  let v: RuleVerdict;
  if (mismatch) v = { rule, verdict: 'mismatch', detail: mismatch };
  else if (!ran.length) v = { rule, verdict: 'not_runnable', detail: results.map((r) => `${r.class}: ${r.reason}`).slice(0, 3).join('; ') || 'no class to run' };
  else if (speed && isSlower(speed.forwardBest, speed.trainBest)) v = { rule, verdict: 'slower', ...ratios };
  else v = { rule, verdict: 'kept', ...ratios };
  if (speed) appendRecord({ file: resolve(file), rule, target: MEASURED_ON, torch: check.torch, forward_ratio: speed.forward, train_ratio: speed.train, slower: v.verdict === 'slower' });
  return v;
}

const rejection = (v: RuleVerdict) => (v.verdict === 'mismatch' ? `verification mismatch: ${v.detail}` : v.verdict === 'slower' ? `measured slower by --verify${ratiosOf(v)}` : `not verified: ${v.detail}`);

/** Each rule of one file alone: its verdicts, with `kept`/`rejected` filled in. */
function verifyRulesOf(plan: RewritePlan, f: FileResult, rules: string[], withhold: Withhold, opts: RuleVerifyOptions, kept: Set<string>, rejected: Map<string, string>): FileVerification {
  const variants: Record<string, string> = {};
  for (const rule of rules) {
    const one = synthesizePlan(plan, (s) => (s.file === f.path && s.rule === rule ? withhold(s) : 'other'));
    const file = one.files.find((x) => x.path === f.path);
    if (file && !file.error) variants[rule] = file.rewritten;
  }
  opts.say(`adopt: verifying ${f.path}: ${rules.join(', ')} (each rule alone, then together)`);
  const check = checkFile(f.path, variants, { config: opts.config, repeats: opts.repeats });
  if (!check.ok) {
    for (const rule of rules) rejected.set(`${f.path}\0${rule}`, `not verified: ${check.error}`);
    return { file: f.path, rules: rules.map((rule) => ({ rule, verdict: 'not_runnable', detail: check.error })), classes: [], status: 'not_runnable', error: check.error };
  }
  const verdicts = rules.map((rule) => {
    const v = judgeRule(f.path, rule, check);
    if (v.verdict === 'kept') kept.add(`${f.path}\0${rule}`);
    else rejected.set(`${f.path}\0${rule}`, rejection(v));
    const results = check.results.filter((r) => r.variant === rule);
    opts.say(`  ${rule}: ${v.verdict}${ratiosOf(v)}${v.detail ? `: ${v.detail.slice(0, 200)}` : ''}; ${results.filter((r) => r.status === 'verified').length}/${results.length} classes verified`);
    return v;
  });
  return { file: f.path, rules: verdicts, classes: [], status: 'unchanged' };
}

/** The kept rules together: rewrites that each verify alone can still interact. A file whose kept
 *  rules mismatch together keeps its original text. */
function verifyTogether(final: RewriteRun, report: FileVerification[], opts: RuleVerifyOptions): void {
  for (const entry of report) {
    const f = final.files.find((x) => x.path === entry.file);
    if (!f || f.error || f.rewritten === f.original) continue;
    const check = checkFile(f.path, { together: f.rewritten }, { config: opts.config });
    if (!check.ok) { entry.status = 'not_runnable'; entry.error = check.error; continue; }
    entry.classes = check.results;
    entry.status = verdictOf(check).status;
    if (entry.status === 'mismatch') {
      f.error = `${f.path}: the verified rules do not verify together (${problemOf(check.results)}); nothing written for this file`;
      f.rewritten = f.original;
    }
    opts.say(`adopt: ${f.path}: ${entry.status} (${check.results.filter((r) => r.status === 'verified').length}/${check.results.length} classes)`);
  }
}

export function verifiedRewrite(plan: RewritePlan, withhold: Withhold, opts: RuleVerifyOptions): RewriteRun {
  requireHarness();
  const first = synthesizePlan(plan, withhold);
  const kept = new Set<string>(); // `${file}\0${rule}` verified alone
  const rejected = new Map<string, string>(); // `${file}\0${rule}` -> reason
  const report: FileVerification[] = [];
  for (const f of first.files) {
    if (f.error || f.rewritten === f.original) continue;
    const rules = [...new Set(first.sites.filter((s) => s.file === f.path && s.decision === 'rewritten').map((s) => s.rule))].sort();
    report.push(verifyRulesOf(plan, f, rules, withhold, opts, kept, rejected));
  }
  // a site that only becomes a rewrite once another rule is withheld (a softmax the attention
  // rule covered) was never verified: it is withheld too
  // (a detection rule's site is never a rewrite: it keeps its own reason)
  const detectOnly = new Set(plan.rules.filter((r) => !r.rewrite).map((r) => r.name));
  const withheld = (s: Site) => withhold(s) ?? rejected.get(`${s.file}\0${s.rule}`) ?? (kept.has(`${s.file}\0${s.rule}`) || detectOnly.has(s.rule) ? null : 'not verified: it became a rewrite only after another rule was withheld');
  const final = synthesizePlan(plan, withheld);
  verifyTogether(final, report, opts);
  for (const s of final.sites) {
    const entry = report.find((e) => e.file === s.file);
    if (s.decision === 'rewritten' && entry?.status === 'verified') s.reason = 'guarded rewrite, verified in torch';
  }
  return { ...final, verification: report };
}
