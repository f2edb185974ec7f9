// Synthesis: each site becomes a byte-range edit of the original text, with guarded dispatch
// (the fast path when its preconditions hold at run time, the original code otherwise).
// Everything outside the edits stays as it was; overlapping sites are resolved by priority.
// The stages of one site's plan live beside this file: statements.ts (a region of statements),
// sequential.ts (an nn.Sequential), template.ts and accessors.ts (filling the rule's template),
// expressions.ts (writing IR values as source), region.ts (what may move), edits.ts (output).
import type { IfStmt, Op, Span, Stmt } from '../dsl/ir.js';
import type { Site } from '../match/matcher.js';
import type { Rule } from '../match/rule.js';
import { basename } from 'node:path';
import { parsePython, type SyntaxNode } from '../parse/python.js';
import { sourceFromText } from '../parse/source.js';
import { callReturnFailure, fromOtherFile } from './call-site.js';
import { applyEdits, EditSet, irValueIn, KERNELS_ALIAS, SiteSpans, unparsableSites, type Edit, type FileResult, type SiteResult } from './edits.js';
import { inlinedSite } from './expressions.js';
import { conditionalAt, groupedAt } from './grouping.js';
import { layerClassGuards, skippedModuleGuards } from './layer-guard.js';
import { isSequentialCall, planSequential } from './sequential.js';
import { identifierNodes, indexOf, lineAt, nodeOfSpan, openSynthFile, type ParsedLookup, type SynthFile } from './source.js';
import { callRunTwice, isAttributeName } from './region.js';
import { linesWithMeta, planStatements, type HoldsOther } from './statements.js';
import { Render } from './template.js';

export { KERNELS_ALIAS, PREAMBLE, preambleEdit, type Decision, type Edit, type FileResult, type SiteResult } from './edits.js';

export interface SynthResult { files: FileResult[]; sites: SiteResult[] }

export function synthesize(sites: Site[], rules: Rule[], known?: ParsedLookup): SynthResult {
  const byRule = new Map(rules.map((r) => [r.name, r]));
  const byFile = new Map<string, Site[]>();
  for (const s of sites) {
    const l = byFile.get(s.file) ?? [];
    l.push(s);
    byFile.set(s.file, l);
  }
  const files: FileResult[] = [];
  const results: SiteResult[] = [];
  for (const [path, list] of byFile) {
    const opened = openSynthFile(path, known);
    const base = (s: Site): SiteResult => ({ rule: s.rule, file: s.file, owner: s.owner, method: s.method, lines: s.lines, bindings: {}, guards: [], decision: 'skipped', reason: '' });
    if ('error' in opened) {
      for (const s of list) results.push({ ...base(s), reason: opened.error });
      files.push({ path, original: '', rewritten: '', edits: [], error: opened.error });
      continue;
    }
    // Higher priority first; then in source order.
    list.sort((a, b) => b.priority - a.priority || a.lines[0] - b.lines[0]);
    const edits = new EditSet(opened.source);
    // statements holding another site stay where they are (moving them would hide that site
    // from this run and show it to the next: not idempotent)
    const spans = new SiteSpans<Site>();
    for (const o of list) {
      for (const x of Object.values(o.ops)) if (x && (x.span.file ?? o.view.file.path) === path) spans.add(indexOf(opened.source, x.span.from), indexOf(opened.source, x.span.to), o);
    }
    spans.seal();
    // each accepted site's edits, with the sites that share them: kept or dropped together
    const groups: { edits: Edit[]; sites: SiteResult[] }[] = [];
    const groupOf = new Map<Edit, number>();
    for (const s of list) {
      const res = base(s);
      const rule = byRule.get(s.rule)!;
      const planned = planEdit(opened, s, rule, res, (start, end) => spans.holdsOther(start, end, s), known);
      // an internal name of the analysis (`self.bns[%5]`) is no Python: the site is refused
      const leaked = typeof planned === 'string' ? undefined : [planned, ...(planned.also ?? [])].map((e) => irValueIn(e.text)).find(Boolean);
      if (typeof planned === 'string') res.reason = planned;
      else if (leaked) res.reason = `the rewrite would write the analysis's name ${leaked} for a value that has no source text here`;
      else {
        const { also = [], ...main } = planned;
        const same = edits.same(main);
        const clash = [main, ...also].map((p) => edits.clash(p)).find(Boolean);
        // two Conv→BN pairs of one nn.Sequential: one FusedSequential edit fuses both
        if (same && !also.length) { res.decision = 'rewritten'; res.reason = `guarded rewrite (the same edit as the site at line ${same.line})`; groups[groupOf.get(same)!]?.sites.push(res); }
        else if (clash) res.reason = `overlaps the ${clash.rule} rewrite at line ${clash.line} (priority ${byRule.get(clash.rule)?.priority} wins)`;
        else {
          for (const e of [main, ...also]) { edits.add(e); groupOf.set(e, groups.length); }
          groups.push({ edits: [main, ...also], sites: [res] });
          res.decision = 'rewritten'; res.reason = also.length ? `guarded rewrite (with ${also.length} edit(s) passing a flag from the callers)` : 'guarded rewrite';
        }
      }
      results.push(res);
    }
    let applied = applyEdits(opened, edits.all);
    if (applied.error && groups.length) {
      // a site whose rewrite does not parse is dropped, with the reason; the others are kept.
      // What still fails then (sites that parse alone but not together) refuses the file.
      const bad = unparsableSites(opened, groups.map((g) => g.edits));
      if (bad.size) {
        for (const [i, why] of bad) for (const r of groups[i].sites) { r.decision = 'skipped'; r.reason = why; }
        applied = applyEdits(opened, groups.filter((_, i) => !bad.has(i)).flatMap((g) => g.edits));
      }
    }
    files.push(applied);
  }
  return { files, sites: results };
}

// ---- planning one site ----------------------------------------------------------------------

function planEdit(f: SynthFile, s: Site, rule: Rule, res: SiteResult, holdsOther: HoldsOther = () => false, known?: ParsedLookup): Edit | string {
  const rw = rule.rewrite;
  if (!rw) return rule.detect ?? 'the rule has no rewrite (detection only)';
  const ops = Object.values(s.ops).filter((o): o is Op => !!o);
  // an op inlined from a helper is rewritten where the helper is called, in this method's file
  const placeOf = (o: Op) => (o.via?.length && o.site ? s.view.file.path : o.span.file ?? s.view.file.path);
  if (ops.some((o) => placeOf(o) !== s.file)) return 'the matched code spans several files';
  // `_adopt.softmax(s, dim=-1)` reads, to the analysis, as the tensor method `softmax` of `_adopt`
  const onAlias = (o: Op) => o.callee.includes(KERNELS_ALIAS) || (o.args[0]?.k === 'name' && o.args[0].path === KERNELS_ALIAS);
  if (ops.some(onAlias)) return 'already rewritten';
  if (aliasTaken(f)) return `the file uses the name ${KERNELS_ALIAS} for something of its own, and the rewrite binds it to adopt_kernels`;
  // An op inlined from a helper (`rotate_half(q)` in apply_rotary_pos_emb) is rewritten where
  // the helper is called: the call is replaced as a whole, the helper stays as it is.
  const inlined = inlinedCallFailure(s, ops);
  if (inlined) return inlined;
  const nodes = ops.map((o) => nodeOfSpan(f, o.via?.length && o.site ? o.site : o.span));
  if (nodes.some((n) => !n)) return 'cannot locate the matched code in the source (file changed since analysis?)';
  if (nodes.some((n) => alreadyGuarded(n!))) return 'already rewritten (inside an adopt guard)';
  const walrus = nodes.map((n) => namedExpressionIn(n!)).find(Boolean);
  if (walrus) return `the matched code binds ${walrus.childForFieldName('name')?.text ?? 'a name'} with := at line ${lineAt(f.source, walrus.startIndex)}, which the rewrite would not keep`;
  const initOnly = ops.every((o) => isInitSpan(s, o)) || nodes.every((n) => isSequentialCall(n!));
  if (initOnly) return planSequential(s, rule, res, nodes as SyntaxNode[], (sp) => nodeOfSpan(f, sp));
  if (ops.some((o) => isInitSpan(s, o))) return 'the match mixes __init__ code and forward code';
  let ctx = new Render(f, s, res, rule);
  const renderGuard = (): string | undefined => {
    // a guard line an accessor settled at analysis (`{m.last_dim_check}` on dim=-1) adds nothing;
    // a guard written `True` stays as the rule wrote it
    const guards = rw.guards.map((g) => [g, ctx.fill(g)]).filter(([g, filled]) => filled !== 'True' || g.trim() === 'True').map(([, filled]) => filled);
    // an expression rewrite replaces what lies in its range; a statements rewrite every matched op
    const replaced = (op: Op) => {
      if (!ctx.range) return true;
      // a callee rewrite replaces the function its call calls; what the arguments compute still runs
      if (rw.kind === 'callee') return op === s.ops[rw.target!];
      const n = nodeOfSpan(f, op.via?.length && op.site ? op.site : op.span);
      return !!n && n.startIndex >= ctx.range[0] && n.endIndex <= ctx.range[1];
    };
    const added = [...layerClassGuards(s), ...skippedModuleGuards(s, rule, replaced)];
    // checks of adopt's own on a rule that calls torch alone: without the package, `_adopt` is None
    if (added.length && !guards.some((g) => g.trim().startsWith(`${KERNELS_ALIAS} is not None`))) guards.unshift(`${KERNELS_ALIAS} is not None`);
    guards.push(...added);
    if (ctx.failure) return undefined;
    res.guards = guards;
    // no guard: the replacement runs unconditionally
    return guards.join(' and ');
  };
  // code inlined from another file's helper: only the call, replaced by the expression the
  // helper returns, can be rewritten here
  const foreign = ops.find(fromOtherFile);
  if (rw.kind === 'stmts' && foreign) return `the matched code runs inside helper ${foreign.via![0].split('.').pop()} of another file (${basename(foreign.span.file!)}), and this rule rewrites statements, not the call's value`;
  if (rw.kind === 'stmts') {
    const noneGroups = rw.noneAbsent.map((meta) => ({ meta, lines: linesWithMeta(rule, meta) }));
    const planned = planStatements(f, s, rw.code, renderGuard, ctx, nodes as SyntaxNode[], holdsOther, { noneGroups });
    if (typeof planned !== 'string') return planned;
    // covering less and guarding more: optional lines under an `if` are left to the original
    // code (the fast path runs when the branch is not taken), as when the kernel does not cover them
    const optional = new Set(rule.pattern.filter((p) => p.optional).map((p) => p.name));
    ctx = new Render(f, s, res, rule);
    const narrower = planStatements(f, s, rw.code, renderGuard, ctx, nodes as SyntaxNode[], holdsOther, { leftOut: optional, noneGroups });
    return typeof narrower === "string" ? planned : narrower;
  }
  if (rw.kind === 'expr' || rw.kind === 'callee') {
    const target = s.ops[rw.target!];
    if (!target) return `the rewrite target '${rw.target}' is an optional line that is absent here`;
    // the call a helper of another file makes is written there: the call of the helper here calls
    // the helper, not the function the rule replaces
    if (rw.kind === 'callee' && fromOtherFile(target)) return `the matched call runs inside helper ${target.via![0].split('.').pop()} of another file (${basename(target.span.file!)}), and this rule replaces the function it calls, which is written there`;
    const outside = fromOtherFile(target) ? callReturnFailure(target, known) : undefined;
    if (outside) return outside;
    const branchOnly = branchOnlyOp(s, ops, target);
    if (branchOnly) return branchOnly;
    // an expression inside a function of this file matched through one call of it (a function
    // nested in forward): its placeholders hold that call's arguments, not the parameters the
    // function's own code sees
    if (target.via?.length && !fromOtherFile(target)) {
      return `the expression at line ${target.span.from.line} is in ${target.via[target.via.length - 1].split('.').pop()}, matched only through its call at line ${target.site?.from.line ?? '?'}; rewritten there it would read that call's arguments`;
    }
    const node = nodeOfSpan(f, fromOtherFile(target) ? target.site! : target.span);
    if (!node) return 'cannot locate the matched code in the source (file changed since analysis?)';
    const bound = namedExpressionIn(node);
    if (bound) return `the rewritten expression binds ${bound.childForFieldName('name')?.text ?? 'a name'} with := at line ${lineAt(f.source, bound.startIndex)}, which the rewrite would not keep`;
    const replacing = rw.kind === 'callee' ? calleeOf(s, target, node) : node;
    if (typeof replacing === 'string') return replacing;
    // operands computed inside the replaced expression are written as they are
    ctx.range = [replacing.startIndex, replacing.endIndex];
    const guard = renderGuard();
    if (guard === undefined) return ctx.failure!;
    const code = ctx.fillCode(rw.code.join(' '));
    if (ctx.failure) return ctx.failure;
    // a call written out as an operand (`self.drop(self.fc(x))` for {x}) must run once, as the
    // original runs it: a template that reads it twice would call the module (and draw its
    // dropout mask) twice
    const twice = callRunTwice(ctx.calls, `${guard} ${code}`);
    if (twice) return `the call ${twice.length > 60 ? `${twice.slice(0, 57)}...` : twice} would run more than once on the fast path (the template reads its value twice); name it first (\`h = ${twice.length > 30 ? '...' : twice}\`) and the rule can read the name`;
    if (rw.kind === 'callee') {
      // only the function changes: the arguments are written once, and run as the original runs them
      const text = guard ? conditionalAt(replacing, code, guard, replacing.text) : groupedAt(replacing, code);
      return { start: replacing.startIndex, end: replacing.endIndex, text, rule: s.rule, line: s.lines[0] };
    }
    const text = guard ? `(${code} if ${guard} else ${node.text})` : isPrimary(code) ? code : `(${code})`;
    return { start: node.startIndex, end: node.endIndex, text, rule: s.rule, line: s.lines[0] };
  }
  return `rewrite kind '${rw.kind}' is not supported for this match`;
}

/** The function of the matched call, which a callee rewrite replaces, or why the site has none. */
function calleeOf(s: Site, target: Op, node: SyntaxNode): SyntaxNode | string {
  const line = target.span.from.line;
  const fn = node.type === 'call' ? node.childForFieldName('function') : null;
  if (!fn) return `the matched code at line ${line} is not a call (${short(node.text)}): the rule replaces the function a call calls`;
  // an op the analysis derived from a larger call (the transpose an einsum canonicalises to)
  // shares that call's span: the function written there is the larger call's, not the op's
  const sameSpan = (o: Op) => o !== target && o.span.start === target.span.start && o.span.end === target.span.end && (o.span.file ?? '') === (target.span.file ?? '');
  if (s.view.ops.some(sameSpan)) return `the call at line ${line} (${short(node.text)}) computes more than the matched ${target.callee}, so its function is not the one the rule replaces`;
  return fn;
}

function short(text: string): string {
  const one = text.replace(/\s+/g, ' ');
  return one.length > 60 ? `${one.slice(0, 57)}...` : one;
}

/** The first `name := value` inside a node (not inside a nested function or lambda). */
function namedExpressionIn(node: SyntaxNode): SyntaxNode | undefined {
  if (node.type === 'named_expression') return node;
  if (node.type === 'lambda' || node.type === 'function_definition') return undefined;
  for (const c of node.namedChildren) {
    const found = namedExpressionIn(c);
    if (found) return found;
  }
  return undefined;
}

/** A matched op under an `if` branch the rewritten expression is not in: the value reaches the
 *  expression only where that branch is taken (`if act: a = silu(g)` / `else: a = g`, then
 *  `a * up`), while the replaced expression runs on every path. */
function branchOnlyOp(s: Site, ops: Op[], target: Op): string | undefined {
  const at = s.view.paths.get(target.id) ?? [];
  const op = ops.find((o) => o !== target && (s.view.paths.get(o.id) ?? []).some((entry, i) => at[i] !== entry));
  if (!op) return undefined;
  return `${op.callee} at line ${op.span.from.line} runs only on one branch of an if, and the expression rewritten at line ${target.span.from.line} runs on every path`;
}

/** A helper call the match replaces must hand back nothing but its return value: no in-place
 *  op on its arguments, and (for a match that starts or ends inside it) no value but the returned
 *  one read outside. */
function inlinedCallFailure(s: Site, ops: Op[]): string | undefined {
  const calls = new Set(ops.filter((o) => o.via?.length && o.site).map((o) => `${o.site!.start}:${o.site!.end}`));
  if (!calls.size) return undefined;
  for (const op of s.view.ops) {
    if (!op.via?.length || !op.site || !calls.has(`${op.site.start}:${op.site.end}`)) continue;
    if (op.kind === 'op' && /[^_]_$/.test(op.callee)) return `the inlined helper changes a value in place (${op.callee} at line ${op.span.from.line})`;
  }
  // a matched op under a branch of the helper holds only when that branch is taken, which the
  // call as a whole does not say
  const ifs = new Map<number, IfStmt>();
  const walk = (xs: Stmt[]) => { for (const x of xs) { if (x.k === 'if') { ifs.set(x.span.start, x); walk(x.then); walk(x.else); } else if (x.k === 'for') walk(x.body); } };
  walk(s.view.method.body);
  for (const op of ops.filter((o) => o.via?.length)) {
    for (const entry of s.view.paths.get(op.id) ?? []) {
      const st = ifs.get(Number(entry.split(':')[0]));
      if (st && inlinedSite(st, s.view.method.span) !== undefined) return `the matched code at ${op.span.file ? `${basename(op.span.file)}:` : 'line '}${op.span.from.line} sits in a branch of helper ${op.via![op.via!.length - 1].split('.').pop()}, which the call at line ${op.site?.from.line ?? '?'} does not decide statically (the call is replaced as a whole)`;
    }
  }
  return undefined;
}

function isInitSpan(s: Site, o: Op): boolean {
  const at = (sp: Span) => sp.start === o.span.start && sp.end === o.span.end;
  return !!s.view.module?.attrs.some((a) => (at(a.span) && (a.span.file ?? '') === (o.span.file ?? '')) || (a.built && at(a.built)));
}

const aliasSeen = new WeakMap<SynthFile, boolean>();

/** Whether the file names `_adopt` without the import a rewrite adds: a variable, parameter or
 *  import of its own, which the guards would read as the kernels' module. */
function aliasTaken(f: SynthFile): boolean {
  let taken = aliasSeen.get(f);
  if (taken === undefined) {
    const text = f.source.text;
    taken = !text.includes(`import adopt_kernels as ${KERNELS_ALIAS}`) && identifierNodes(f.root).some((n) => n.text === KERNELS_ALIAS && !isAttributeName(n));
    aliasSeen.set(f, taken);
  }
  return taken;
}

function alreadyGuarded(node: SyntaxNode): boolean {
  // every guard a rewrite writes begins `_adopt is not None`; `enabled(...)` is the usual rest
  const adoptGuard = (cond: SyntaxNode | null | undefined) => !!cond && (cond.text.includes(`${KERNELS_ALIAS}.enabled(`) || cond.text.includes(`${KERNELS_ALIAS} is not None`));
  // a callee rewrite guards the function alone (`(_adopt.f(C) if <guard> else C)(args)`): the
  // call itself then sits under no guard, its function is one
  let fn = node.type === 'call' ? node.childForFieldName('function') : null;
  while (fn?.type === 'parenthesized_expression' && fn.namedChildren.length === 1) fn = fn.namedChildren[0];
  if (fn?.type === 'conditional_expression' && adoptGuard(fn.namedChildren[1])) return true;
  for (let n: SyntaxNode | null = node.parent; n; n = n.parent) {
    if (n.type === 'conditional_expression' || n.type === 'if_statement') {
      const cond = n.type === 'if_statement' ? n.childForFieldName('condition') : n.namedChildren[1];
      if (adoptGuard(cond)) return true;
    }
    if (n.type === 'function_definition') return false;
  }
  return false;
}

/** Whether an expression binds tighter than any operator around it (a name, call, attribute,
 *  subscript or literal), so it replaces an operand without parentheses. */
function isPrimary(code: string): boolean {
  const e = parsePython(sourceFromText('<code>', code)).root.namedChildren[0]?.namedChildren[0];
  return !!e && e.endIndex === code.length && ['identifier', 'call', 'attribute', 'subscript', 'parenthesized_expression', 'integer', 'float', 'string', 'true', 'false', 'none', 'list', 'tuple', 'dictionary'].includes(e.type);
}
