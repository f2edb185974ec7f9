// `adopt rules list | show [NAME] | test [NAME] | check PATH...`: writing and testing a rule without
// touching TypeScript. The `--rules` options every command that uses rules shares live here too.
import { existsSync, readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { AdoptError } from '../diag.js';
import { loadRuleFile, RuleError, ruleDiagnostic, ruleFilesIn, ruleSummary, selectRules, type Rule } from '../match/rule.js';
import { ruleReference } from '../match/rule-reference.js';
import { placed, ruleProblems, torchNames } from './rule-errors.js';
import { testRules } from './rules-test.js';

export const RULES_HELP = 'rules to use besides the built-in library: library rule names (which then select from it), .rule files and directories; comma-separated, repeatable';
export const NO_BUILTIN_RULES_HELP = 'leave out the built-in rule library: use only the rules given with --rules';
/** The flag `--why-not=all` is turned into before parsing. */
export const WHY_NOT_ALL = '--why-not-all';

/** `--rules a --rules b,c` → `a,b,c`. */
export function collectRules(value: string, previous?: string): string {
  return previous ? `${previous},${value}` : value;
}

import type { RulesOptions } from './rules-test.js';
export type { RulesOptions };

export function registerRulesCommands(program: Command, done: (code: number) => void): void {
  const rules = program.command('rules').description('list, show, test and check rules (docs/rule-language.md)');
  const withRules = (c: Command) => c.option('--rules <names|paths>', RULES_HELP, collectRules).option('--no-builtin-rules', NO_BUILTIN_RULES_HELP);
  withRules(rules.command('list').description('list the rules in use: name, file and title'))
    .action((opts: RulesOptions) => done(listRules(opts)));
  withRules(rules.command('show').description('print a rule\'s source; without a name, the reference: rule items, constraints and kernels')
    .argument('[name]', 'a rule name'))
    .action((name: string | undefined, opts: RulesOptions) => done(showRule(name, opts)));
  withRules(rules.command('test').description('rewrite each rule\'s examples, compare them with the expected output (printing the diff), check them in torch, and check its refuse cases are refused')
    .argument('[name]', 'only this rule (default: the rules --rules gives, or the whole library)')
    .option('--update', 'write the rewritten examples as their expected output (after.py) instead of comparing'))
    .action((name: string | undefined, opts: RulesOptions) => done(testRules(name, opts)));
  rules.command('check').description('check rule files without running them: syntax, names, constraints, kernels, example files, and that the templates are Python')
    .argument('<paths...>', '.rule files or directories of them')
    .action((paths: string[]) => done(checkRules(paths)));
}

function listRules(opts: RulesOptions): number {
  for (const r of selectRules(opts.rules, { builtin: opts.builtinRules }).rules) process.stdout.write(`${ruleSummary(r)}\n`);
  return 0;
}

function showRule(name: string | undefined, opts: RulesOptions): number {
  if (!name) { process.stdout.write(ruleReference()); return 0; }
  const r = selectRules(opts.rules, { builtin: opts.builtinRules }).rules.find((x) => x.name === name);
  if (!r) throw new AdoptError(`unknown rule '${name}' (adopt rules list shows the rules in use)`);
  process.stdout.write(readFileSync(r.file, 'utf8'));
  return 0;
}

/** Each rule's problems beyond parsing: example files that do not exist, templates that are not
 *  Python. Every file is checked, and every problem reported. */
function checkRules(paths: string[]): number {
  for (const p of paths) if (!existsSync(p)) throw new AdoptError(`${p}: error: no such rule file or directory`);
  const rules: Rule[] = [];
  let failed = 0;
  for (const f of ruleFilesIn(paths)) {
    try { rules.push(...loadRuleFile(f)); } catch (e) {
      if (!(e instanceof RuleError)) throw e;
      for (const d of placed(e)) process.stderr.write(`${d.file}:${d.line}:${d.col}: error: ${d.message}\n`);
      failed++;
    }
  }
  // every torch name of the kernel lines looked up at once (one Python run)
  torchNames(rules.flatMap((r) => r.kernels.filter((k) => k.library === 'torch').map((k) => k.callee)));
  const byName = new Map<string, Rule>();
  for (const r of rules) {
    const problems = ruleProblems(r, { examples: true, torch: true });
    // two definitions of one name are refused where the rules are used together (--rules)
    const prev = byName.get(r.name);
    if (prev) problems.unshift(ruleDiagnostic(r.file, r.line, 1, `rule '${r.name}' is also defined at ${prev.file}:${prev.line}`));
    else byName.set(r.name, r);
    for (const d of problems) process.stderr.write(`${d.file}:${d.line}:${d.col}: ${d.severity}: ${d.message}\n`);
    const errors = problems.filter((d) => d.severity === 'error').length;
    if (errors) failed++;
    else process.stdout.write(`${r.file}:${r.line}: rule ${r.name}: ok (${r.pattern.length} pattern lines, ${r.examples.length} example(s)${problems.length ? `, ${problems.length} warning(s)` : ''})\n`);
  }
  return failed ? 2 : 0;
}
