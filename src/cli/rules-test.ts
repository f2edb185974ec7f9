// `adopt rules test`: each example of each rule is rewritten with that rule alone and compared
// with its expected output (the difference printed as a diff; `--update` writes it instead), the
// expected output must not change when rewritten again, and the pair is run in Python: the
// rewritten model must load the original state dict strictly, take the fast path, and match the
// original forward and backward within the example's tolerances.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { writeAtomically } from '../atomic-write.js';
import { AdoptError } from '../diag.js';
import { selectRules, type Rule } from '../match/rule.js';
import { exampleFile } from '../match/rule-examples.js';
import { checkPair } from '../verify/pair.js';
import { runRewrite } from '../pipeline/index.js';

export interface RulesOptions { rules?: string; builtinRules?: boolean; update?: boolean }

export function testRules(name: string | undefined, opts: RulesOptions): number {
  const selection = selectRules(opts.rules, { builtin: opts.builtinRules });
  const pool = opts.rules ? selection.given : selection.rules;
  const rules = name ? selection.rules.filter((r) => r.name === name) : pool;
  if (name && !rules.length) throw new AdoptError(`unknown rule '${name}' (adopt rules list shows the rules in use)`);
  let failed = 0, passed = 0;
  const report = (r: Rule, what: string, problems: string[], note = '') => {
    if (problems.length) { failed++; process.stdout.write(`FAIL ${r.name} ${what}\n${problems.map((p) => p.replace(/^/gm, '     ')).join('\n')}\n`); }
    else { passed++; process.stdout.write(`ok   ${r.name} ${what}${note}\n`); }
  };
  // a folder of several rules' refuse cases is named once, not once per rule
  const warned = new Set<string>();
  const warn = (m: string) => { if (!warned.has(m)) process.stderr.write(`adopt: warning: ${m}\n`); warned.add(m); };
  for (const r of rules) {
    if (!r.examples.length) { process.stdout.write(`FAIL ${r.name}: no examples (every rule carries before/after examples)\n`); failed++; continue; }
    for (const ex of r.examples) report(r, ex.before, testExample(r, ex, { update: !!opts.update, rerun: updateCommand(r, opts) }), opts.update ? ' (expected output written)' : '');
    for (const file of refuseCases(r, warn)) report(r, relative(dirname(r.file), file), testRefusal(r, file));
  }
  process.stdout.write(`${passed} passed, ${failed} failed\n`);
  return failed ? 1 : 0;
}

/** The command that accepts a rule's new output: `rules test --update NAME` with the rules the
 *  command ran with, so that it finds the rule again (a rule of a file given with --rules is not
 *  in the library). */
export function updateCommand(r: Rule, opts: Pick<RulesOptions, 'rules' | 'builtinRules'>): string {
  const rules = opts.rules ? ` --rules ${shellWord(opts.rules)}` : '';
  const builtin = opts.builtinRules === false ? ' --no-builtin-rules' : '';
  return `adopt rules test --update${rules}${builtin} ${r.name}`;
}

/** A word as a POSIX shell reads it back: quoted where it holds anything but plain path characters. */
function shellWord(w: string): string {
  return /^[\w@%+=:,./-]+$/.test(w) ? w : `'${w.replace(/'/g, `'\\''`)}'`;
}

export function testExample(r: Rule, ex: Rule['examples'][number], opts: { update?: boolean; rerun?: string } = {}): string[] {
  const problems: string[] = [];
  const before = exampleFile(r, ex.before);
  const after = exampleFile(r, ex.after);
  const alone = { rules: r.file, builtinRules: false };
  let run: ReturnType<typeof runRewrite>;
  try { run = runRewrite([before], alone); } catch (e) { return [`cannot rewrite ${ex.before}: ${(e as Error).message}`]; }
  const file = run.files.find((f) => resolve(f.path) === before);
  if (!r.rewrite) {
    // a detection rule: it finds its site and changes nothing
    if (!run.sites.some((s) => s.rule === r.name)) problems.push(`the rule found no site in ${ex.before}`);
    if (file && file.rewritten !== file.original) problems.push(`a detection rule changed ${ex.before}`);
    return problems;
  }
  const rewritten = run.sites.filter((s) => s.decision === 'rewritten' && s.rule === r.name);
  if (!rewritten.length) problems.push(`the rule rewrote nothing in ${ex.before}${run.sites.length ? ` (${run.sites.map((s) => s.reason).join('; ')})` : ''}`);
  if (opts.update) {
    if (!file || problems.length) return problems;
    // an expected output that cannot be written stops the command: later examples would be
    // checked against outputs the user asked to replace
    try {
      writeAtomically(after, file.rewritten);
    } catch (e) {
      throw new AdoptError(`cannot write the expected output ${after}: ${(e as Error).message}`);
    }
  }
  let expected: string;
  try { expected = readFileSync(after, 'utf8'); } catch { return [...problems, `missing expected output ${ex.after} (adopt rules test --update writes it)`]; }
  if (file && file.rewritten !== expected) {
    problems.push(`the rewrite of ${ex.before} differs from ${ex.after} (${opts.rerun ?? `adopt rules test --update ${r.name}`} accepts the new output):\n${lineDiff(expected, file.rewritten, relative(process.cwd(), after), 'rewritten')}`);
  }
  // Idempotence: the rewritten code has nothing left to rewrite.
  const again = runRewrite([after], alone);
  if (again.files.some((f) => f.rewritten !== f.original)) problems.push(`rewriting ${ex.after} again changes it (not idempotent)`);
  const kernel = r.kernels.find((k) => k.library === 'native')?.callee ?? '';
  const result = checkPair(before, after, { model: ex.model ?? 'Model', shape: ex.shapes, dtype: ex.dtype, kernel });
  if (!result.ok) problems.push(`numerical check could not run: ${result.error}`);
  else if (result.check.status === 'not_runnable') problems.push(`numerical check could not run: ${result.check.reason}`);
  else if (result.check.status !== 'verified') problems.push(...(result.check.problems ?? []).map((p) => `numerical check: ${p}`));
  else problems.push(...toleranceProblems(result.check, ex));
  return problems;
}

/** The example's own tolerances, on top of the check's per-dtype one (which they cannot widen:
 *  every entry point compares under the same policy): an error passes when it is within `atol`
 *  absolutely or within `rtol` of the largest magnitude of its tensor. */
export function toleranceProblems(check: { max_abs?: number; max_rel?: number }, ex: Pick<Rule['examples'][number], 'atol' | 'rtol'>): string[] {
  const { max_abs: abs, max_rel: rel } = check;
  if (abs === undefined || rel === undefined || abs <= ex.atol || rel <= ex.rtol) return [];
  return [`numerical check: max abs error ${abs.toPrecision(3)} is over the example's atol ${ex.atol}, and the relative error ${rel.toPrecision(3)} over its rtol ${ex.rtol}`];
}

/** A rule's refuse cases, in the `refuse/` folder beside its rule file: `refuse/NAME/*.py` are
 *  the cases of rule NAME, and `refuse/*.py` those of the one rule the folder's rule files define.
 *  Where they define several, `refuse/*.py` could belong to any of them: they are not run, and
 *  `warn` says so. */
export function refuseCases(r: Rule, warn: (message: string) => void = () => {}): string[] {
  const dir = join(dirname(r.file), 'refuse');
  const pyIn = (d: string) => (existsSync(d) && statSync(d).isDirectory() ? readdirSync(d).filter((f) => f.endsWith('.py')).sort().map((f) => join(d, f)) : []);
  const own = pyIn(join(dir, r.name));
  const shared = pyIn(dir);
  if (!shared.length) return own;
  const names = rulesDefinedIn(dirname(r.file));
  if (names.length <= 1) return [...shared, ...own];
  warn(`${relative(process.cwd(), dir)}: ${shared.length} refuse case(s) not run: the rule files beside it define ${names.join(', ')}; put each rule's cases in ${relative(process.cwd(), dir)}/NAME/`);
  return own;
}

/** The names of the rules the .rule files of a directory define (not its subdirectories). */
function rulesDefinedIn(dir: string): string[] {
  const names = readdirSync(dir).filter((f) => f.endsWith('.rule')).flatMap((f) => {
    try { return [...readFileSync(join(dir, f), 'utf8').matchAll(/^rule\s+([A-Za-z_]\w*)/gm)].map((m) => m[1]); } catch { return []; }
  });
  return [...new Set(names)];
}

const REFUSE_MARKER = /#\s*refuse:\s*(.+?)\s*$/;

/** A refuse case: code the rule must leave alone. Each line marked `# refuse: REASON` must be
 *  reported there (a near miss, or a site not rewritten) with a reason containing REASON, and the
 *  rule must change nothing in the file. */
export function testRefusal(r: Rule, file: string): string[] {
  const marks = readFileSync(file, 'utf8').split('\n').flatMap((text, i) => {
    const m = REFUSE_MARKER.exec(text);
    return m ? [{ line: i + 1, reason: m[1] }] : [];
  });
  if (!marks.length) return [`no line is marked '# refuse: REASON'`];
  let run: ReturnType<typeof runRewrite>;
  try { run = runRewrite([file], { rules: r.file, builtinRules: false, whyNot: true }); } catch (e) { return [`cannot rewrite ${file}: ${(e as Error).message}`]; }
  const problems: string[] = [];
  for (const s of run.sites) if (s.rule === r.name && s.decision === 'rewritten') problems.push(`line ${s.lines[0]}: rewritten, but the case says the rule must refuse it`);
  for (const m of marks) {
    const reasons = [
      ...run.nearMisses.filter((n) => n.rule === r.name && n.line === m.line).map((n) => n.reason),
      ...run.sites.filter((s) => s.rule === r.name && s.decision !== 'rewritten' && s.lines[0] <= m.line && m.line <= s.lines[1]).map((s) => s.reason),
    ];
    if (!reasons.some((x) => x.toLowerCase().includes(m.reason.toLowerCase()))) {
      problems.push(`line ${m.line}: expected a refusal saying '${m.reason}'; ${reasons.length ? `got: ${reasons.join('; ')}` : 'the rule says nothing there'}`);
    }
  }
  return problems;
}

/** A unified diff of two texts by lines (longest common subsequence), three lines of context. */
export function lineDiff(a: string, b: string, nameA: string, nameB: string): string {
  const x = a.split('\n');
  const y = b.split('\n');
  const n = x.length, m = y.length;
  if (n * m > 4e6) return `--- ${nameA}\n+++ ${nameB}\n(the files are too large to diff here: ${n} and ${m} lines)\n`;
  const lcs = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) lcs[i][j] = x[i] === y[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
  const ops: { t: ' ' | '-' | '+'; s: string; i: number; j: number }[] = [];
  let i = 0, j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && x[i] === y[j]) { ops.push({ t: ' ', s: x[i], i, j }); i++; j++; }
    else if (i < n && (j === m || lcs[i + 1][j] >= lcs[i][j + 1])) { ops.push({ t: '-', s: x[i], i, j }); i++; }
    else { ops.push({ t: '+', s: y[j], i, j }); j++; }
  }
  const out = [`--- ${nameA}`, `+++ ${nameB}`];
  const changed = ops.map((o, k) => (o.t !== ' ' ? k : -1)).filter((k) => k >= 0);
  for (let h = 0; h < changed.length;) {
    let end = h;
    while (end + 1 < changed.length && changed[end + 1] - changed[end] <= 7) end++;
    const from = Math.max(0, changed[h] - 3), to = Math.min(ops.length, changed[end] + 4);
    const hunk = ops.slice(from, to);
    const aLen = hunk.filter((o) => o.t !== '+').length, bLen = hunk.filter((o) => o.t !== '-').length;
    out.push(`@@ -${hunk[0].i + 1},${aLen} +${hunk[0].j + 1},${bLen} @@`, ...hunk.map((o) => `${o.t}${o.s}`));
    h = end + 1;
  }
  return out.join('\n');
}
