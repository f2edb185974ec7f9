// Rules: which ones a command uses. The built-in library (rules/) plus what `--rules` names:
// library rules by name, .rule files, and directories of them, comma-separated and repeatable.
// Every broken file is reported, each at rule-file:line:col.
import { readdirSync, realpathSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { grammarPath } from '../dsl/grammars.js';
import { RuleError, ruleDiagnostic, type PatVal, type Rule } from './rule-ir.js';
import { loadRuleFile } from './rule-parse.js';

export * from './rule-ir.js';
export { loadRuleFile, parseRules } from './rule-parse.js';
export { CONSTRAINTS } from './constraints.js';

const metaLinesCache = new WeakMap<Rule, Map<string, string[]>>();

/** Metavariable → the pattern lines that mention it (in any form of the line, its constructor
 *  included). */
export function metaLines(rule: Rule): Map<string, string[]> {
  let out = metaLinesCache.get(rule);
  if (out) return out;
  out = new Map();
  const visit = (v: PatVal | undefined, line: string) => {
    if (v?.k === 'meta') out!.set(v.name, [...(out!.get(v.name) ?? []), line]);
    if (v?.k === 'tuple') v.items.forEach((x) => visit(x, line));
  };
  for (const p of rule.pattern) for (const a of [...p.args, ...(p.ctor ?? []), ...(p.alts ?? []).flatMap((x) => x.args)]) visit(a.val, p.name);
  metaLinesCache.set(rule, out);
  return out;
}

export function defaultRulesDir(): string {
  return grammarPath('../rules');
}

export interface RuleSelection {
  /** The rules a command runs with. */
  rules: Rule[];
  /** The rules `--rules` itself named (by name, file or directory): what `rules test` tests. */
  given: Rule[];
}

/** `--rules` values (each comma-separated) resolved against the library. Library rules named
 *  select from the library; files and directories add their rules, a rule named like a library
 *  rule replacing it. Without names the whole library is used, unless `builtin` is false. */
export function selectRules(spec?: string | string[], opts: { builtin?: boolean } = {}): RuleSelection {
  const items = [spec ?? []].flat().flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean);
  const library = loadRuleFiles([defaultRulesDir()]);
  const names: string[] = [];
  const paths: string[] = [];
  for (const it of items) {
    // a library rule's name stays a name even where a folder of that name is at hand
    const pathLike = /[/\\]|\.rule$/.test(it);
    if (!pathLike && library.some((r) => r.name === it)) names.push(it);
    else if (isPath(it)) paths.push(it);
    else if (pathLike) throw new RuleError(`${it}: error: no such rule file or directory`);
    else names.push(it);
  }
  const user = loadRuleFiles(paths);
  const byName = new Map<string, Rule>();
  for (const r of user) {
    const prev = byName.get(r.name);
    if (!prev) { byName.set(r.name, r); continue; }
    const message = `rule '${r.name}' is also defined at ${prev.file}:${prev.line}`;
    throw new RuleError(`${r.file}:${r.line}:1: error: ${message}`, [ruleDiagnostic(r.file, r.line, 1, message)]);
  }
  for (const n of names) {
    if (byName.has(n)) continue;
    if (!library.some((r) => r.name === n)) throw new RuleError(`unknown rule '${n}' (library rules: ${library.map((r) => r.name).join(', ')}; or give a .rule file or directory)`);
    if (opts.builtin === false) throw new RuleError(`rule '${n}' is in the built-in library, which --no-builtin-rules leaves out`);
  }
  const fromLibrary = opts.builtin === false ? [] : library.filter((r) => !byName.has(r.name) && (!names.length || names.includes(r.name)));
  const rules = [...fromLibrary, ...user];
  if (!rules.length) throw new RuleError('no rules to use: --no-builtin-rules leaves only the rules given with --rules, and none were given');
  const given = items.length ? [...fromLibrary.filter((r) => names.includes(r.name)), ...user] : rules;
  return { rules, given };
}

/** The rules a command runs with (see selectRules). */
export function loadRules(spec?: string | string[], opts: { builtin?: boolean } = {}): Rule[] {
  return selectRules(spec, opts).rules;
}

/** Rules from files and directories (searched for *.rule at any depth), each file read once;
 *  every file that fails is reported, not only the first. */
export function loadRuleFiles(paths: string[]): Rule[] {
  const files = ruleFilesIn(paths);
  const rules: Rule[] = [];
  const errors: RuleError[] = [];
  for (const f of files) {
    try { rules.push(...loadRuleFile(f)); } catch (e) { if (e instanceof RuleError) errors.push(e); else throw e; }
  }
  if (errors.length === 1) throw errors[0];
  if (errors.length) {
    const note = `${errors.length} rule files have errors`;
    throw new RuleError(`${errors.map((e) => e.message).join('\n')}\n${note}`, errors.flatMap((e) => e.diagnostics));
  }
  return rules;
}

/** The rule files that files and directories name, each once. */
export function ruleFilesIn(paths: string[]): string[] {
  const files: string[] = [];
  for (const p of paths) {
    const found = statSync(p).isDirectory() ? ruleFilesUnder(p) : [p];
    if (!found.length) throw new RuleError(`${p}: error: no .rule files in this directory`);
    for (const f of found) if (!files.some((g) => sameFile(f, g))) files.push(f);
  }
  return files;
}

function ruleFilesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .sort((a, b) => a.name.localeCompare(b.name))
    .flatMap((e) => (e.isDirectory() ? ruleFilesUnder(join(dir, e.name)) : e.name.endsWith('.rule') ? [join(dir, e.name)] : []));
}

function isPath(p: string): boolean {
  try { statSync(p); return true; } catch { return false; }
}

function sameFile(a: string, b: string): boolean {
  try { return realpathSync(a) === realpathSync(b); } catch { return a === b; }
}

export function ruleSummary(r: Rule): string {
  return `${r.name.padEnd(24)} ${basename(r.file)}  ${r.title}`;
}
