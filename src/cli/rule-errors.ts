// Rule-file problems as the user sees them, the same for `rules check` and every command that takes
// `--rules`: rule file:line:col and the message. The rule loader places a problem of a rewrite's
// templates at the `rewrite` line; a template can span several lines below it, so the problem is
// moved here to the line that holds what it names.
import { existsSync, readFileSync } from 'node:fs';
import { AdoptError, type Diagnostic } from '../diag.js';
import { calleeWarnings } from '../match/callee-names.js';
import { exampleFile } from '../match/rule-examples.js';
import { RuleError, ruleDiagnostic, type Rule } from '../match/rule.js';
import { templateProblems } from '../match/rule-template.js';
import { kernelRegistry } from '../match/kernel-registry.js';
import { runPython } from '../verify/python.js';

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
  if (!m) return d.code === 'rule' ? placeQuoted(d) : d;
  const placeholder = new RegExp(`\\{[?,]?(?:[A-Za-z_]\\w*=)?${m[1]}(?![\\w])`);
  const at = firstPlace(d.file, d.line, (text) => text.search(placeholder));
  return at ? { ...d, ...at } : d;
}

/** A problem the loader places at the start of a rewrite line, at what it quotes from the lines
 *  below: the target of `rewrite expr NAME`, a placeholder as written (`{name.part}`, `{name}`,
 *  `{,kw=name}`), the first one the message quotes. */
function placeQuoted(d: Diagnostic): Diagnostic {
  if (d.col !== 1) return d;
  const target = /^rewrite expr names '([A-Za-z_]\w*)'/.exec(d.message)?.[1];
  const placeholder = /\{[^{}\n]*\}/.exec(d.message)?.[0];
  const find = target !== undefined
    ? (text: string) => { const m = new RegExp(`^(\\s*rewrite\\s+expr\\s+)${target}\\b`).exec(text); return m ? m[1].length : -1; }
    : placeholder !== undefined ? (text: string) => text.indexOf(placeholder) : undefined;
  const at = find && firstPlace(d.file, d.line, find);
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
 *  Python, callees that look misspelt (warnings), and with `examples`, example files that do not
 *  exist. */
export function ruleProblems(rule: Rule, opts: { examples: boolean; torch?: boolean }): Diagnostic[] {
  const out: Diagnostic[] = calleeWarnings(rule);
  if (opts.examples) {
    for (const ex of rule.examples) {
      for (const which of ['before', 'after'] as const) {
        const path = exampleFile(rule, ex[which]);
        if (!existsSync(path)) out.push(ruleDiagnostic(rule.file, ex.line, 3, `rule ${rule.name}: example file ${ex[which]} does not exist (paths are relative to the rule file's directory: looked for ${path})`));
      }
    }
  }
  if (opts.examples) out.push(...casesProblems(rule));
  if (opts.torch) out.push(...torchKernelProblems(rule));
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

/** The dtypes the numerical check runs an example in; the documented ones, and fp64, which the
 *  check runs but the rule language does not offer. */
const EXAMPLE_DTYPES = ['fp32', 'fp16', 'bf16'];
const CHECKED_DTYPES = [...EXAMPLE_DTYPES, 'fp64'];

/** What `rules test` would reject, or the rule language does not offer, in a rule's examples and
 *  kernel lines: errors where the test fails, warnings otherwise. */
function casesProblems(rule: Rule): Diagnostic[] {
  const out: Diagnostic[] = [];
  const warn = (line: number, message: string): Diagnostic => ({ ...ruleDiagnostic(rule.file, line, 3, `rule ${rule.name}: ${message}`), severity: 'warning' });
  if (!rule.examples.length) {
    out.push(ruleDiagnostic(rule.file, rule.line, 1, `rule ${rule.name} has no examples: 'adopt rules test' fails a rule without an 'example "before.py" "after.py"' line`));
  }
  for (const ex of rule.examples) {
    if (!CHECKED_DTYPES.includes(ex.dtype)) out.push(ruleDiagnostic(rule.file, ex.line, 3, `rule ${rule.name}: example dtype '${ex.dtype}' is not one of ${EXAMPLE_DTYPES.join(', ')}`));
    else if (!EXAMPLE_DTYPES.includes(ex.dtype)) out.push(warn(ex.line, `example dtype '${ex.dtype}' is not one the rule language offers (${EXAMPLE_DTYPES.join(', ')})`));
  }
  const targets = new Set(Object.values(kernelRegistry().kernels).flatMap((k) => k.targets ?? []));
  for (const k of rule.kernels) {
    if (!targets.has(k.target)) out.push(warn(k.line, `kernel target '${k.target}' is not a device adopt_kernels runs on (${[...targets].join(', ')})`));
  }
  // `rules test` requires the rewritten example to call the first native kernel
  const native = rule.kernels.find((k) => k.library === 'native');
  const fn = native && /^adopt_kernels\.([A-Za-z_]\w*)$/.exec(native.callee)?.[1];
  if (fn && rule.rewrite && !rule.rewrite.code.some((c) => new RegExp(`(?<![\\w.])_adopt\\.${fn}\\b`).test(c))) {
    const called = [...new Set(rule.rewrite.code.flatMap((c) => [...c.matchAll(/(?<![\w.])_adopt\.([A-Za-z_]\w*)\(/g)].map((m) => m[1])))];
    out.push(ruleDiagnostic(rule.file, native.line, 3, `rule ${rule.name}: the kernel line names adopt_kernels.${fn}, but the rewrite ${called.length ? `calls ${called.map((c) => `_adopt.${c}`).join(', ')}` : `does not call it`}: 'adopt rules test' requires the rewritten example to call the kernel named first`));
  }
  return out;
}

/** The rules a command runs with, refused (every problem as rule file:line:col) when a rule given
 *  with --rules has a template that would not be Python: such a rule's sites would otherwise fail
 *  one by one at synthesis, without naming the rule file. Warnings (a callee that looks misspelt)
 *  are written to `warn` and the rules used. */
export function checkTemplates(rules: Rule[], given: (r: Rule) => boolean, warn: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): Rule[] {
  const problems = rules.filter(given).flatMap((r) => ruleProblems(r, { examples: false }));
  const errors = problems.filter((d) => d.severity === 'error');
  if (errors.length) throw new RuleError(errors.map((d) => d.message).join('\n'), errors);
  for (const d of problems) warn(`${d.file}:${d.line}:${d.col}: ${d.severity}: ${d.message}`);
  return rules;
}

/** An error of loading rules with each diagnostic at its place. */
export function placed(e: AdoptError): Diagnostic[] {
  return e.diagnostics.map(placeRuleDiagnostic);
}

/** A `kernel TARGET torch "NAME"` line whose name the installed torch does not have. */
function torchKernelProblems(rule: Rule): Diagnostic[] {
  const out: Diagnostic[] = [];
  for (const k of rule.kernels) {
    if (k.library !== 'torch') continue;
    const found = torchNames([k.callee]).get(k.callee);
    if (found && !found.ok) out.push(ruleDiagnostic(rule.file, k.line, 3, `rule ${rule.name}: kernel ${k.target} torch "${k.callee}": ${found.why}`));
  }
  return out;
}

/** What the installed torch says of a name: whether it has it, and if not, why. */
export interface TorchName { ok: boolean; why?: string }

const torchKnown = new Map<string, TorchName | null>();

// Resolves names in the installed torch by attributes from \`torch\` itself, importing nothing
// more than torch imports (a name could otherwise import, and so run, any module under torch).
// Reads names only (JSON on stdin); nothing of the rule file runs.
const RESOLVE_TORCH = `
import difflib, json, sys
names = json.load(sys.stdin)
try:
    import torch
except Exception as e:
    print(json.dumps({"error": "torch cannot be imported: %s" % e})); sys.exit(0)
out = {}
for n in names:
    parts = n.split(".")
    obj, i = (torch, 1) if parts[0] == "torch" else (None, 0)
    missing = None
    for j in range(i, len(parts)):
        if obj is None or not hasattr(obj, parts[j]):
            missing = j; break
        obj = getattr(obj, parts[j])
    if missing is None:
        out[n] = None
    else:
        owner = ".".join(parts[:missing])
        near = difflib.get_close_matches(parts[missing], [a for a in dir(obj) if not a.startswith("_")], 3) if obj is not None else []
        out[n] = {"owner": owner, "name": parts[missing], "near": [owner + "." + x for x in near]}
print(json.dumps({"version": torch.__version__, "names": out}))
`;

/** The names of torch a rule's `kernel TARGET torch "..."` lines give, looked up in the torch the
 *  numerical checks run with (adopt keeps no list of torch's functions: the analysis takes any
 *  member of torch's namespaces). One Python run for all names asked at once; a name not found is
 *  an error with the nearest names torch has. Without Python or torch nothing is said (null). */
export function torchNames(names: string[]): Map<string, TorchName | null> {
  const ask = [...new Set(names)].filter((n) => !torchKnown.has(n));
  if (ask.length) {
    let r: ReturnType<typeof runPython>;
    try { r = runPython(['-c', RESOLVE_TORCH], { input: JSON.stringify(ask), timeoutMs: 120_000 }); } catch (e) { r = { ok: false, error: (e as Error).message }; }
    let value: { version?: string; names?: Record<string, { owner: string; name: string; near: string[] } | null>; error?: string } | undefined;
    try { value = r.ok ? JSON.parse(r.stdout.trim().split('\n').pop() ?? '') : undefined; } catch { value = undefined; }
    for (const n of ask) {
      const got = value?.names && n in value.names ? value.names[n] : undefined;
      if (got === undefined) torchKnown.set(n, null);
      else if (got === null) torchKnown.set(n, { ok: true });
      else torchKnown.set(n, { ok: false, why: `torch ${value!.version} has no ${got.owner ? `${got.owner}.` : ''}${got.name}${got.near.length ? ` (did you mean ${got.near.join(', ')}?)` : ''}` });
    }
  }
  return new Map(names.map((n) => [n, torchKnown.get(n) ?? null]));
}
