// Verification that keeps or drops rewrites (`rewrite --verify`): every rule's rewrite of a file is
// checked on its own in torch (tiny model, strict state-dict load, outputs and gradients) and timed
// against the original. A rule whose rewrite mismatches is withheld from that file; one measured
// slower is withheld and recorded, so later rewrites leave it out too; one whose code no class ran
// (a loss the inputs never reach) is withheld as not exercised, since nothing checked it. What is
// kept is then checked together once more. Each check compares in float64 (what the rewrite
// computes, tight tolerance), then again in float32, where the compiled kernels run.
import { resolve } from 'node:path';
import { AdoptError } from '../diag.js';
import type { Site } from '../match/matcher.js';
import type { FileResult } from '../synth/synthesize.js';
import { speedOf, type ClassResult, type FileCheck } from '../verify/file.js';
import { runPython } from '../verify/python.js';
import { appendRecord, isSlower } from '../verify/records.js';
import { compiledKernelOf } from '../match/kernel-registry.js';
import { clipWords } from '../text-clip.js';
import { checkFile, problemOf } from './check.js';
import { synthesizePlan, type RewritePlan } from './plan.js';
import type { FileVerification, ReportedClass, RewriteRun, RuleVerdict, Withhold } from './types.js';

/** The device verification measures on: the harness runs models on the CPU. */
export const MEASURED_ON = 'cpu';

export interface RuleVerifyOptions { config?: string; shapes?: Record<string, string>; repeats: number; say: (line: string) => void }

/** Verification that cannot run at all is an error (exit 2, nothing written), never a rewrite
 *  that nobody checked. */
function requireHarness(): void {
  const r = runPython(['-c', 'import torch'], { timeoutMs: 120_000 });
  if (!r.ok || r.status !== 0) {
    const why = r.ok ? (r.stderr.trim().split('\n').pop() ?? `exit ${r.status}`) : r.error;
    throw new AdoptError(`--verify needs Python with torch, and it cannot run (${why}); run scripts/setup-python.sh or set ADOPT_PYTHON. Nothing was written`);
  }
}

/** A class that matched only because the rewrite's own code never ran in it compared the original
 *  code with itself: it is not exercised, never verified. */
export function exercisedOnly(results: ClassResult[]): ReportedClass[] {
  return results.map((r) => (r.status === 'verified' && r.exercised === false
    ? { ...r, status: 'not_exercised' as const, reason: 'the rewritten code never ran in this class' } : r));
}

/** "2/6 classes verified, 3 not exercised; 14 compiled kernel calls in float32" */
function classCounts(results: ReportedClass[]): string {
  const n = (s: string) => results.filter((r) => r.status === s).length;
  const compiled = results.filter((r) => r.status === 'verified').reduce((a, r) => a + (r.kernel_pass?.compiled_calls ?? 0), 0);
  const kernels = results.some((r) => r.status === 'verified' && r.kernel_pass) ? `; ${compiled} compiled kernel call(s) in the float32 pass` : '';
  return `${n('verified')}/${results.length} classes verified${n('not_exercised') ? `, ${n('not_exercised')} not exercised` : ''}${kernels}`;
}

/** Why a rule's code ran nowhere: the classes that ran without reaching it, and those that could
 *  not be run at all (the rewrite may sit in one of them, so its code is not dead code). */
function notExercised(idle: ReportedClass[], broken: ReportedClass[]): string {
  const names = (xs: ReportedClass[]) => `${xs.slice(0, 3).map((r) => r.class).join(', ')}${xs.length > 3 ? ', ...' : ''}`;
  const ran = `its rewritten code never ran in any of the ${idle.length} class(es) that could be built and run (${names(idle)})`;
  if (!broken.length) return `${ran}: a function no class calls, or a branch their inputs never reach; nothing checked it`;
  const why = broken.slice(0, 2).map((r) => `${r.class}: ${clipWords(r.reason ?? '', 200)}`).join('; ');
  return `${ran}, and ${broken.length} class(es) could not be run (${why}): the rewrite may be in one of those, or a function no class calls, or a branch the inputs never reach; nothing checked it`;
}

const ratiosOf = (v: RuleVerdict) => (v.forward_ratio !== undefined ? ` (forward x${v.forward_ratio.toFixed(2)}, train x${v.train_ratio!.toFixed(2)})` : '');

/** One rule's verdict from its variant's classes; speed is recorded for later runs (not for a
 *  variant holding one of its sites, `record` false). */
function judgeRule(file: string, rule: string, check: FileCheck, compiled: boolean, variant = rule, record = true): RuleVerdict {
  const raw = check.results.filter((r) => r.variant === variant);
  const results = exercisedOnly(raw);
  const mismatch = problemOf(raw);
  const ran = results.filter((r) => r.status === 'verified');
  const idle = results.filter((r) => r.status === 'not_exercised');
  // only what ran the rewrite is timed against the original
  const speed = speedOf(raw.filter((r) => r.exercised !== false));
  const ratios = speed ? { forward_ratio: speed.forward, train_ratio: speed.train } : {};
  let v: RuleVerdict;
  if (mismatch) v = { rule, verdict: 'mismatch', detail: mismatch };
  else if (!ran.length && idle.length) v = { rule, verdict: 'not_exercised', detail: notExercised(idle, results.filter((r) => r.status === 'not_runnable')) };
  else if (!ran.length) v = { rule, verdict: 'not_runnable', detail: results.map((r) => `${r.class}: ${r.reason}`).slice(0, 3).join('; ') || 'no class to run' };
  // a rule whose kernel is compiled, timed where none of its calls ran compiled (the tiny instance
  // is below the kernels' size floors, where each call runs the code it replaces), measured its
  // guards at that size alone: that says nothing of the model at its own size, and drops nothing
  else if (speed && compiled && speed.compiledCalls === 0) v = { rule, verdict: 'kept', ...ratios, detail: BELOW_FLOORS };
  else if (speed && isSlower(speed.forwardBest, speed.trainBest)) v = { rule, verdict: 'slower', ...ratios };
  else v = { rule, verdict: 'kept', ...ratios };
  if (speed && record) appendRecord({ file: resolve(file), rule, target: MEASURED_ON, torch: check.torch, forward_ratio: speed.forward, train_ratio: speed.train, slower: v.verdict === 'slower' });
  return v;
}

const BELOW_FLOORS = 'speed not judged: at the tiny instance\'s sizes its compiled kernel is below its size floor and runs the code it replaces (ADOPT_CPU_MIN_BYTES=0 times it)';

/** Whether a rule's CPU kernel is a compiled one (whose calls below a size floor run torch code). */
function hasCompiledKernel(plan: RewritePlan, rule: string): boolean {
  return !!plan.rules.find((r) => r.name === rule)?.kernels.some((k) => k.target === 'cpu' && compiledKernelOf(k.callee));
}

/** Most sites of one rule in one file verified one by one after the rule's rewrite mismatched. */
const MAX_SITES_ALONE = 8;

/** A rule whose rewrite of a file mismatches may still be right at most of its sites (a class the
 *  wrong site is not in): each site is verified alone, and those that verify are kept (their keys
 *  in `keptSites`); the others are withheld with their own mismatch. What is kept is checked
 *  together afterwards, as every kept rewrite is. */
function verifySitesAlone(plan: RewritePlan, f: FileResult, rule: string, withhold: Withhold, opts: RuleVerifyOptions, keptSites: Set<string>, siteReasons: Map<string, string>): void {
  const ofRule = (s: { file: string; rule: string }) => s.file === f.path && s.rule === rule;
  const sites = synthesizePlan(plan, (s) => (ofRule(s) ? withhold(s) : 'other')).sites.filter((s) => ofRule(s) && s.decision === 'rewritten');
  if (sites.length < 2 || sites.length > MAX_SITES_ALONE) return;
  const variants: Record<string, string> = {};
  sites.forEach((site, i) => {
    const one = synthesizePlan(plan, (s) => (ofRule(s) && siteKey(s) === siteKey(site) ? withhold(s) : 'other'));
    const file = one.files.find((x) => x.path === f.path);
    if (file && !file.error && file.rewritten !== file.original) variants[`${rule}__site${i}`] = file.rewritten;
  });
  const check = checkFile(f.path, variants, { config: opts.config, shapes: opts.shapes, repeats: opts.repeats, kernels: true });
  if (!check.ok) return;
  const keptLines: string[] = [];
  sites.forEach((site, i) => {
    if (!variants[`${rule}__site${i}`]) return;
    const v = judgeRule(f.path, rule, check, hasCompiledKernel(plan, rule), `${rule}__site${i}`, false);
    if (v.verdict === 'kept') { keptSites.add(siteKey(site)); keptLines.push(`${site.lines[0]}`); }
    else siteReasons.set(siteKey(site), rejection(v));
  });
  if (keptLines.length) opts.say(`  ${rule}: ${keptLines.length} of its ${sites.length} sites verify alone and are kept (line ${keptLines.join(', ')})`);
}

const rejection = (v: RuleVerdict) => (v.verdict === 'mismatch' ? `verification mismatch: ${v.detail}` : v.verdict === 'slower' ? `measured slower by --verify${ratiosOf(v)}` : `not verified: ${v.detail}`);

/** Each rule of one file alone: its verdicts, with `kept`/`rejected` filled in. */
function verifyRulesOf(plan: RewritePlan, f: FileResult, rules: string[], withhold: Withhold, opts: RuleVerifyOptions, kept: Set<string>, rejected: Map<string, string>, sitesAlone: { kept: Set<string>; reasons: Map<string, string> }): FileVerification {
  const variants: Record<string, string> = {};
  for (const rule of rules) {
    const one = synthesizePlan(plan, (s) => (s.file === f.path && s.rule === rule ? withhold(s) : 'other'));
    const file = one.files.find((x) => x.path === f.path);
    if (file && !file.error) variants[rule] = file.rewritten;
  }
  opts.say(`adopt: verifying ${f.path}: ${rules.join(', ')} (each rule alone, then together)`);
  const check = checkFile(f.path, variants, { config: opts.config, shapes: opts.shapes, repeats: opts.repeats, kernels: true });
  if (!check.ok) {
    for (const rule of rules) rejected.set(`${f.path}\0${rule}`, `not verified: ${check.error}`);
    return { file: f.path, rules: rules.map((rule) => ({ rule, verdict: 'not_runnable', detail: check.error })), classes: [], status: 'not_runnable', error: check.error };
  }
  const verdicts = rules.map((rule) => {
    const v = judgeRule(f.path, rule, check, hasCompiledKernel(plan, rule));
    if (v.verdict === 'kept') kept.add(`${f.path}\0${rule}`);
    else rejected.set(`${f.path}\0${rule}`, rejection(v));
    const results = exercisedOnly(check.results.filter((r) => r.variant === rule));
    opts.say(`  ${rule}: ${v.verdict}${ratiosOf(v)}${v.detail ? `: ${clipWords(v.detail, 400)}` : ''}; ${classCounts(results)}`);
    if (v.verdict === 'mismatch') verifySitesAlone(plan, f, rule, withhold, opts, sitesAlone.kept, sitesAlone.reasons);
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
    const check = checkFile(f.path, { together: f.rewritten }, { config: opts.config, shapes: opts.shapes, kernels: true });
    if (!check.ok) { entry.status = 'not_runnable'; entry.error = check.error; continue; }
    entry.classes = exercisedOnly(check.results);
    entry.status = entry.classes.some((r) => r.status === 'mismatch') ? 'mismatch' : entry.classes.some((r) => r.status === 'verified') ? 'verified' : 'not_runnable';
    if (entry.status === 'mismatch') {
      f.error = `${f.path}: the verified rules do not verify together (${problemOf(check.results)}); nothing written for this file`;
      f.rewritten = f.original;
    }
    opts.say(`adopt: ${f.path}: ${entry.status} (${classCounts(entry.classes)}; compared in float64, then float32)`);
  }
}

const siteKey = (s: { file: string; rule: string; owner: string; method: string; lines: [number, number] }) => `${s.file}\0${s.rule}\0${s.owner}\0${s.method}\0${s.lines[0]}:${s.lines[1]}`;

/** Synthesis with the rejected rules withheld. A site that becomes a rewrite only once another rule
 *  is withheld (a softmax the rejected attention rewrite covered) was never verified: it is
 *  withheld too, and so is any that withholding it frees in turn. A site synthesis skips on its own
 *  (a softmax inside a kept attention rewrite) keeps synthesis's reason. A detection rule's site is
 *  never a rewrite. */
function withoutUnverified(plan: RewritePlan, base: Withhold, kept: Set<string>, keptSites: Set<string>): RewriteRun {
  const unverified = new Set<string>();
  const withheld: Withhold = (s) => base(s) ?? (unverified.has(siteKey(s)) ? 'not verified: it became a rewrite only after another rule was withheld' : null);
  for (;;) {
    const run = synthesizePlan(plan, withheld);
    const fresh = run.sites.filter((s) => s.decision === 'rewritten' && !kept.has(`${s.file}\0${s.rule}`) && !keptSites.has(siteKey(s)) && !unverified.has(siteKey(s)));
    if (!fresh.length) return run;
    for (const s of fresh) unverified.add(siteKey(s));
  }
}

export function verifiedRewrite(plan: RewritePlan, withhold: Withhold, opts: RuleVerifyOptions): RewriteRun {
  requireHarness();
  const first = synthesizePlan(plan, withhold);
  const kept = new Set<string>(); // `${file}\0${rule}` verified alone
  const rejected = new Map<string, string>(); // `${file}\0${rule}` -> reason
  // sites of a mismatching rule verified one by one: those kept, and the others' own reasons
  const sitesAlone = { kept: new Set<string>(), reasons: new Map<string, string>() };
  const report: FileVerification[] = [];
  for (const f of first.files) {
    if (f.error || f.rewritten === f.original) continue;
    const rules = [...new Set(first.sites.filter((s) => s.file === f.path && s.decision === 'rewritten').map((s) => s.rule))].sort();
    report.push(verifyRulesOf(plan, f, rules, withhold, opts, kept, rejected, sitesAlone));
  }
  const verdictOf = (s: Site) => (sitesAlone.kept.has(siteKey(s)) ? null : sitesAlone.reasons.get(siteKey(s)) ?? rejected.get(`${s.file}\0${s.rule}`) ?? null);
  const final = withoutUnverified(plan, (s) => withhold(s) ?? verdictOf(s), kept, sitesAlone.kept);
  verifyTogether(final, report, opts);
  for (const entry of report) {
    // verification asked for and not possible (the file does not import, exits, or no class of it
    // can be built) is an error of that file, never a quiet "0 rewritten"
    const why = entry.error ?? (entry.rules.length && entry.rules.every((v) => v.verdict === 'not_runnable') ? entry.rules[0].detail : undefined);
    if (!why) continue;
    let f = final.files.find((x) => x.path === entry.file);
    if (f?.error) continue;
    if (!f) {
      // every rule withheld: synthesis had nothing of this file to give
      const { path, original } = first.files.find((x) => x.path === entry.file)!;
      final.files.push(f = { path, original, rewritten: original, edits: [] });
    }
    entry.status = 'not_runnable';
    f.error = `${f.path}: verification could not run: ${why}; nothing written for this file`;
    f.rewritten = f.original;
    f.edits = [];
  }
  for (const s of final.sites) {
    const entry = report.find((e) => e.file === s.file);
    if (s.decision === 'rewritten' && entry?.status === 'verified') s.reason = 'guarded rewrite, verified in torch';
  }
  return { ...final, verification: report };
}
