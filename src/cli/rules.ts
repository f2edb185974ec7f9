// `adopt rules list | show NAME | test [NAME] | check FILE`: writing and testing a rule without
// touching TypeScript. A rule's examples are rewritten and compared with their expected output,
// then run in Python: the rewritten model must load the original state dict strictly, take the
// fast path, and match the original forward and backward within the example's tolerances.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { AdoptError } from '../diag.js';
import { loadRuleFile, loadRules, ruleSummary, type Rule } from '../match/rule.js';
import { checkPair } from '../verify/pair.js';
import { runRewrite } from './rewrite.js';

export function rulesCommand(cmd: string, arg: string | undefined, opts: { rules?: string }): number {
  switch (cmd) {
    case 'list': {
      for (const r of loadRules(opts.rules)) process.stdout.write(`${ruleSummary(r)}\n`);
      return 0;
    }
    case 'show': {
      const r = loadRules(opts.rules).find((x) => x.name === arg);
      if (!r) throw new AdoptError(`unknown rule '${arg}'`);
      process.stdout.write(readFileSync(r.file, 'utf8'));
      return 0;
    }
    case 'check': {
      const rules = loadRuleFile(arg!);
      for (const r of rules) process.stdout.write(`${r.file}:${r.line}: rule ${r.name}: ok (${r.pattern.length} pattern lines, ${r.examples.length} example(s))\n`);
      return 0;
    }
    case 'test': {
      const rules = loadRules(opts.rules).filter((r) => !arg || r.name === arg);
      if (arg && !rules.length) throw new AdoptError(`unknown rule '${arg}'`);
      let failed = 0, passed = 0;
      for (const r of rules) {
        if (!r.examples.length) { process.stdout.write(`FAIL ${r.name}: no examples (every rule carries before/after examples)\n`); failed++; continue; }
        for (const ex of r.examples) {
          const problems = testExample(r, ex);
          if (problems.length) { failed++; process.stdout.write(`FAIL ${r.name} ${ex.before}\n${problems.map((p) => `     ${p}`).join('\n')}\n`); }
          else { passed++; process.stdout.write(`ok   ${r.name} ${ex.before}\n`); }
        }
      }
      process.stdout.write(`${passed} passed, ${failed} failed\n`);
      return failed ? 1 : 0;
    }
    default:
      throw new AdoptError(`unknown rules command '${cmd}'`);
  }
}

export function testExample(r: Rule, ex: Rule['examples'][number]): string[] {
  const problems: string[] = [];
  const root = resolve(r.file, '..', '..');
  const before = resolve(root, ex.before);
  const after = resolve(root, ex.after);
  const run = runRewrite([before], { rules: r.file });
  const file = run.files.find((f) => resolve(f.path) === before);
  if (!r.rewrite) {
    // a detection rule: it finds its site and changes nothing
    if (!run.sites.some((s) => s.rule === r.name)) problems.push(`the rule found no site in ${ex.before}`);
    if (file && file.rewritten !== file.original) problems.push(`a detection rule changed ${ex.before}`);
    return problems;
  }
  const rewritten = run.sites.filter((s) => s.decision === 'rewritten' && s.rule === r.name);
  if (!rewritten.length) problems.push(`the rule rewrote nothing in ${ex.before}${run.sites.length ? ` (${run.sites.map((s) => s.reason).join('; ')})` : ''}`);
  let expected: string;
  try { expected = readFileSync(after, 'utf8'); } catch { return [...problems, `missing expected output ${ex.after}`]; }
  if (file && file.rewritten !== expected) problems.push(`the rewrite of ${ex.before} differs from ${ex.after}`);
  // Idempotence: the rewritten code has nothing left to rewrite.
  const again = runRewrite([after], { rules: r.file });
  if (again.files.some((f) => f.rewritten !== f.original)) problems.push(`rewriting ${ex.after} again changes it (not idempotent)`);
  const kernel = r.kernels.find((k) => k.library === 'native')?.callee ?? '';
  const result = checkPair(before, after, { model: ex.model ?? 'Model', shape: ex.shapes, dtype: ex.dtype, kernel });
  if (!result.ok) problems.push(`numerical check could not run: ${result.error}`);
  else if (result.check.status === 'not_runnable') problems.push(`numerical check could not run: ${result.check.reason}`);
  else if (result.check.status !== 'verified') problems.push(...(result.check.problems ?? []).map((p) => `numerical check: ${p}`));
  return problems;
}
