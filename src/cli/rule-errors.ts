// Rule-file problems as the user sees them, the same for `rules check` and every command that takes
// `--rules`: rule file:line:col and the message. The rule loader places a problem of a rewrite's
// templates at the `rewrite` line; a template can span several lines below it, so the problem is
// moved here to the line that holds what it names.
import { existsSync, readFileSync } from 'node:fs';
import { AdoptError, type Diagnostic } from '../diag.js';
import { exampleFile } from '../match/rule-examples.js';
import { RuleError, ruleDiagnostic, type Rule } from '../match/rule.js';
import { templateProblems } from '../match/rule-template.js';

/** The lines of a rule from `from` (1-based) to the line before the next rule, each with its
 *  number; comment lines left out. */
function ruleLinesFrom(file: string, from: number): { n: number; text: string }[] {
  let lines: string[];
  try { lines = readFileSync(file, 'utf8').split('\n'); } catch { return []; }
  const out: { n: number; text: string }[] = [];
  for (let i = from - 1; i < lines.length; i++) {
    if (i >= from && /^\s*rule\s/.test(lines[i])) break;
    if (!/^\s*\/\//.test(lines[i])) out.push({ n: i + 1, text: lines[i] });
  }
  return out;
}

/** The first place at or below line `from` of `file` where `find` gives a column. */
function firstPlace(file: string, from: number, find: (text: string) => number): { line: number; col: number } | undefined {
  for (const l of ruleLinesFrom(file, from)) {
    const at = find(l.text);
    if (at >= 0) return { line: l.n, col: at + 1 };
  }
  return undefined;
}

const UNBOUND = /uses \{([A-Za-z_]\w*)[^}]*\}, but '\1' is not bound by the pattern/;

/** A rule diagnostic at the place it names: an unbound `{name}` placeholder at the placeholder. */
export function placeRuleDiagnostic(d: Diagnostic): Diagnostic {
  const m = d.code === 'rule' ? UNBOUND.exec(d.message) : null;
  if (!m) return d;
  const placeholder = new RegExp(`\\{[?,]?(?:[A-Za-z_]\\w*=)?${m[1]}(?![\\w])`);
  const at = firstPlace(d.file, d.line, (text) => text.search(placeholder));
  return at ? { ...d, ...at } : d;
}

/** Where a template of `rule` is written: its own line when found, else the `rewrite` line. */
function templatePlace(rule: Rule, template: string): { line: number; col: number } {
  const rw = rule.rewrite!;
  const forms = [template, JSON.stringify(template).slice(1, -1)];
  return firstPlace(rule.file, rw.line, (text) => {
    for (const f of forms) { const i = text.indexOf(f); if (i >= 0) return text.lastIndexOf('"', i); }
    return -1;
  }) ?? { line: rw.line, col: 3 };
}

/** What is wrong with a loaded rule beyond what the loader checks: templates that would not be
 *  Python, and with `examples`, example files that do not exist. */
export function ruleProblems(rule: Rule, opts: { examples: boolean }): Diagnostic[] {
  const out: Diagnostic[] = [];
  if (opts.examples) {
    for (const ex of rule.examples) {
      for (const which of ['before', 'after'] as const) {
        const path = exampleFile(rule, ex[which]);
        if (!existsSync(path)) out.push(ruleDiagnostic(rule.file, ex.line, 3, `rule ${rule.name}: example file ${ex[which]} does not exist (paths are relative to the rule file's directory: looked for ${path})`));
      }
    }
  }
  const rw = rule.rewrite;
  if (rw) {
    for (const m of templateProblems(rule)) {
      // a guard's problem quotes the guard; any other is the rewrite's code, placed at its first line
      const guard = rw.guards.find((g) => m.startsWith(`guard "${g}"`));
      const at = templatePlace(rule, guard ?? rw.code[0] ?? '');
      out.push(ruleDiagnostic(rule.file, at.line, at.col, `rule ${rule.name}: ${m}`));
    }
  }
  return out;
}

/** The rules a command runs with, refused (every problem as rule file:line:col) when a rule given
 *  with --rules has a template that would not be Python: such a rule's sites would otherwise fail
 *  one by one at synthesis, without naming the rule file. */
export function checkTemplates(rules: Rule[], given: (r: Rule) => boolean): Rule[] {
  const problems = rules.filter(given).flatMap((r) => ruleProblems(r, { examples: false }));
  if (problems.length) throw new RuleError(problems.map((d) => d.message).join('\n'), problems);
  return rules;
}

/** An error of loading rules with each diagnostic at its place. */
export function placed(e: AdoptError): Diagnostic[] {
  return e.diagnostics.map(placeRuleDiagnostic);
}
