// Synthesis: each site becomes a byte-range edit of the original text, with guarded dispatch
// (the fast path when its preconditions hold at run time, the original code otherwise).
// Everything outside the edits stays as it was; overlapping sites are resolved by priority.
import type { Expr, Op, Span, Stmt } from '../dsl/ir.js';
import type { SyntaxNode } from '../parse/python.js';
import { parsePython } from '../parse/python.js';
import { sourceFromText } from '../parse/source.js';
import type { Site } from '../match/matcher.js';
import { attrOf } from '../match/method.js';
import { metaLines, type Rule } from '../match/rule.js';
import { identifierNodes, indentationAt, indexOf, lineAt, namesIn, lineEndIndex, lineStartIndex, nodeAt, nodeOfSpan, openSynthFile, readCondition, statementOf, type ParsedLookup, type SynthFile } from './source.js';
import { flagCallers } from './flag.js';
import { applyEdits, EditSet, KERNELS_ALIAS, SiteSpans, type Edit, type FileResult } from './edits.js';

/** Whether another site's matched code lies within a source range. */
type HoldsOther = (start: number, end: number) => boolean;

export { KERNELS_ALIAS, PREAMBLE, preambleEdit, type Edit, type FileResult } from './edits.js';

export type Decision = 'rewritten' | 'skipped';

/** Placeholder for "the value the statement returns" while a template is filled. */
const RETURN_TARGET = '__adopt_return__';

export interface SiteResult {
  rule: string;
  file: string;
  owner: string;
  method: string;
  lines: [number, number];
  bindings: Record<string, string>;
  guards: string[];
  decision: Decision;
  reason: string;
}

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
    for (const s of list) {
      const res = base(s);
      const rule = byRule.get(s.rule)!;
      const planned = planEdit(opened, s, rule, res, (start, end) => spans.holdsOther(start, end, s));
      if (typeof planned === 'string') res.reason = planned;
      else {
        const { also = [], ...main } = planned;
        const same = edits.same(main);
        const clash = [main, ...also].map((p) => edits.clash(p)).find(Boolean);
        // two Conv→BN pairs of one nn.Sequential: one FusedSequential edit fuses both
        if (same && !also.length) { res.decision = 'rewritten'; res.reason = `guarded rewrite (the same edit as the site at line ${same.line})`; }
        else if (clash) res.reason = `overlaps the ${clash.rule} rewrite at line ${clash.line} (priority ${byRule.get(clash.rule)?.priority} wins)`;
        else { for (const e of [main, ...also]) edits.add(e); res.decision = 'rewritten'; res.reason = also.length ? `guarded rewrite (with ${also.length} edit(s) passing a flag from the callers)` : 'guarded rewrite'; }
      }
      results.push(res);
    }
    files.push(applyEdits(opened, edits.all));
  }
  return { files, sites: results };
}

// ---- planning one site ----------------------------------------------------------------------

function planEdit(f: SynthFile, s: Site, rule: Rule, res: SiteResult, holdsOther: HoldsOther = () => false): Edit | string {
  const rw = rule.rewrite;
  if (!rw) return 'the rule has no rewrite (detection only)';
  const ops = Object.values(s.ops).filter((o): o is Op => !!o);
  if (ops.some((o) => (o.span.file ?? s.view.file.path) !== s.file)) return 'the matched code spans several files';
  if (ops.some((o) => o.callee.includes(KERNELS_ALIAS))) return 'already rewritten';
  // An op inlined from a helper (`rotate_half(q)` in apply_rotary_pos_emb) is rewritten where
  // the helper is called: the call is replaced as a whole, the helper stays as it is.
  const inlined = inlinedCallFailure(s, ops);
  if (inlined) return inlined;
  const nodes = ops.map((o) => nodeOfSpan(f, o.via?.length && o.site ? o.site : o.span));
  if (nodes.some((n) => !n)) return 'cannot locate the matched code in the source (file changed since analysis?)';
  if (nodes.some((n) => alreadyGuarded(n!))) return 'already rewritten (inside an adopt guard)';
  const initOnly = ops.every((o) => isInitSpan(s, o)) || nodes.every((n) => isSequentialCall(n!));
  if (initOnly) return planSequential(s, rule, res, nodes as SyntaxNode[]);
  if (ops.some((o) => isInitSpan(s, o))) return 'the match mixes __init__ code and forward code';
  let ctx = new Render(f, s, res, rule);
  const renderGuard = (): string | undefined => {
    const guards = rw.guards.map((g) => ctx.fill(g));
    if (ctx.failure) return undefined;
    res.guards = guards;
    return guards.join(' and ') || 'True';
  };
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
  if (rw.kind === 'expr') {
    const target = s.ops[rw.target!];
    if (!target) return `the rewrite target '${rw.target}' is an optional line that is absent here`;
    const node = nodeOfSpan(f, target.span)!;
    // operands computed inside the replaced expression are written as they are
    ctx.range = [node.startIndex, node.endIndex];
    const guard = renderGuard();
    if (guard === undefined) return ctx.failure!;
    const code = ctx.fill(rw.code.join(' '));
    if (ctx.failure) return ctx.failure;
    const original = node.text;
    return { start: node.startIndex, end: node.endIndex, text: `(${code} if ${guard} else ${original})`, rule: s.rule, line: s.lines[0] };
  }
  return `rewrite kind '${rw.kind}' is not supported for this match`;
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
  const ifs = new Map<number, import('../dsl/ir.js').IfStmt>();
  const walk = (xs: import('../dsl/ir.js').Stmt[]) => { for (const x of xs) { if (x.k === 'if') { ifs.set(x.span.start, x); walk(x.then); walk(x.else); } else if (x.k === 'for') walk(x.body); } };
  walk(s.view.method.body);
  for (const op of ops.filter((o) => o.via?.length)) {
    for (const entry of s.view.paths.get(op.id) ?? []) {
      const st = ifs.get(Number(entry.split(':')[0]));
      if (st && inlinedSite(st, s.view.method.span) !== undefined) return `the matched code at line ${op.span.from.line} sits in a branch of the helper it is inlined from`;
    }
  }
  return undefined;
}

function isInitSpan(s: Site, o: Op): boolean {
  const at = (sp: Span) => sp.start === o.span.start && sp.end === o.span.end;
  return !!s.view.module?.attrs.some((a) => (at(a.span) && (a.span.file ?? '') === (o.span.file ?? '')) || (a.built && at(a.built)));
}

function alreadyGuarded(node: SyntaxNode): boolean {
  for (let n: SyntaxNode | null = node.parent; n; n = n.parent) {
    if (n.type === 'conditional_expression' || n.type === 'if_statement') {
      const cond = n.type === 'if_statement' ? n.childForFieldName('condition') : n.namedChildren[1];
      if (cond?.text.includes(`${KERNELS_ALIAS}.enabled(`)) return true;
    }
    if (n.type === 'function_definition') return false;
  }
  return false;
}

/** Conv→BN (or Linear→BN) adjacent in an nn.Sequential: the Sequential becomes adopt's
 *  FusedSequential, a drop-in subclass with the same children and state-dict keys. */
function isSequentialCall(n: SyntaxNode): boolean {
  return n.type === 'call' && /(^|\.)Sequential$/.test(n.childForFieldName('function')?.text ?? '');
}

function planSequential(s: Site, rule: Rule, res: SiteResult, nodes: SyntaxNode[]): Edit | string {
  const stmt = statementOf(nodes[0]);
  if (!stmt) return 'cannot locate the nn.Sequential in __init__';
  let call: SyntaxNode | undefined = isSequentialCall(nodes[0]) ? nodes[0] : undefined;
  const find = (n: SyntaxNode) => {
    if (call) return;
    if (n.type === 'call' && /(^|\.)Sequential$/.test(n.childForFieldName('function')?.text ?? '')) { call = n; return; }
    n.namedChildren.forEach(find);
  };
  find(stmt);
  if (!call) return 'the nn.Sequential call is not in this statement';
  const fn = call.childForFieldName('function')!;
  const enabled = `${KERNELS_ALIAS}.enabled('${rule.name}')`;
  res.guards = [`${KERNELS_ALIAS} is not None`, enabled];
  return {
    start: fn.startIndex, end: fn.endIndex,
    text: `(${KERNELS_ALIAS}.FusedSequential if ${KERNELS_ALIAS} is not None and ${enabled} else ${fn.text})`,
    rule: s.rule, line: s.lines[0],
  };
}

interface StatementOptions {
  /** Optional lines left to the original code when under an `if` (covering less). */
  leftOut?: Set<string>;
  /** Per `none_means_absent $m`: the metavariable and the lines that exist only with it. */
  noneGroups?: { meta: string; lines: Set<string> }[];
}

/** `if X is not None:` around matched lines that all belong to a `none_means_absent` group whose
 *  metavariable is X itself: taken or not, the kernel call with X is right. */
function noneMeansAbsent(branch: SyntaxNode, inside: string[], s: Site, groups: StatementOptions['noneGroups'] = []): boolean {
  const m = /^([A-Za-z_]\w*) is not None$/.exec(branch.childForFieldName('condition')?.text ?? '');
  if (!m || !inside.length) return false;
  return groups.some((g) => {
    const b = s.bindings[g.meta];
    return b?.k === 'name' && b.path === m[1] && inside.every((n) => g.lines.has(n));
  });
}

/** The pattern lines that mention `$meta`, with those tied to them by `together`/`needs`. */
function linesWithMeta(rule: Rule, meta: string): Set<string> {
  const lines = new Set(metaLines(rule).get(meta) ?? []);
  for (let grew = true; grew;) {
    grew = false;
    for (const c of rule.where) {
      if (c.name !== 'together' && c.name !== 'needs') continue;
      const names = c.args.map((a) => (a.k === 'ref' ? a.name : ''));
      if (names.some((n) => lines.has(n))) for (const n of names) if (n && !lines.has(n)) { lines.add(n); grew = true; }
    }
  }
  return lines;
}

function planStatements(f: SynthFile, s: Site, code: string[], renderGuard: () => string | undefined, ctx: Render, nodes: SyntaxNode[], holdsOther: HoldsOther = () => false, opts: StatementOptions = {}): Edit | string {
  const leftOut = opts.leftOut ?? new Set<string>();
  const stmts = nodes.map((n) => statementOf(n));
  if (stmts.some((x) => !x)) return 'a matched op is not inside a statement';
  // Bring every statement up to one common block.
  const block = commonBlock(stmts as SyntaxNode[]);
  if (!block) return 'the matched statements are not in one function body';
  const top = (stmts as SyntaxNode[]).map((x) => ancestorIn(x, block)!);
  const kids = block.namedChildren.filter((c) => c.type !== 'comment');
  const idx = top.map((t) => kids.findIndex((k) => k.startIndex === t.startIndex && k.endIndex === t.endIndex));
  const first = Math.min(...idx);
  const last = Math.max(...idx);
  const extraGuards: string[] = [];
  const hoisted: SyntaxNode[] = [];
  const fastFirst: string[] = [];
  // what the fast path assigns before the kernel runs, and where in the original; the
  // conditions the guard reads, and where in the original they are evaluated
  const firstWrites: { name: string; at: number }[] = [];
  const condAt: { cond: SyntaxNode; at: number }[] = [];
  const substitutions = new Map<SyntaxNode, Map<SyntaxNode, string>>();
  // optional ops the rewrite requires to be absent (`{h.absent}`)
  const skippable = new Set([...code.join('\n').matchAll(/\{([A-Za-z_]\w*)\.absent\}/g)].map((m) => m[1]).concat([...leftOut]));
  for (let i = first; i <= last; i++) {
    const k = kids[i];
    if (idx.includes(i)) {
      // A matched op inside `if cond:` (no else) holds on the path where cond holds.
      if (k.type === 'if_statement' && !top.some((t, j) => t.startIndex === k.startIndex && stmts[j]!.startIndex === k.startIndex)) {
        if (k.namedChildren.some((c) => c.type === 'else_clause' || c.type === 'elif_clause')) return `line ${lineOf(f, k)}: the matched code is in a branch with an else`;
        // every statement of the branch must be a matched one: other code there (a mask
        // reshaped under a nested if) would be skipped by the fast path
        const body = k.childForFieldName('consequence')?.namedChildren.filter((c) => c.type !== 'comment') ?? [];
        // a check that only raises is not code the fast path needs, nor is a plain assignment
        // the matched code reads inline (`causal_mask = attention_mask[..., :k_len]`) that
        // commutes with the statements before it
        const matchedHere = (b: SyntaxNode) => (stmts as SyntaxNode[]).some((m) => m.startIndex === b.startIndex && m.endIndex === b.endIndex);
        const priorMatched = kids.slice(first, i).filter((x) => idx.includes(kids.indexOf(x)));
        // a statement that reads only the device or dtype of the scores (GPT-2's mask value,
        // `torch.finfo(attn_weights.dtype).min`) reads them off the query instead
        const readsOff = new Map<SyntaxNode, Map<SyntaxNode, string>>();
        const runsFirst = (b: SyntaxNode, j: number) => {
          const prior = [...kids.slice(first, i).filter((x) => !hoisted.includes(x)), ...body.slice(0, j).filter(matchedHere)];
          if (commutes(b, prior)) return true;
          const subs = deviceReads(b, prior);
          if (!subs || !commutes(b, prior, new Set(subs.keys()))) return false;
          readsOff.set(b, subs);
          return true;
        };
        const stray = body.find((b, j) => !matchedHere(b) && !isRaiseOnly(b) && !runsFirst(b, j));
        const inside = Object.entries(s.ops).filter(([, o]) => { const n = o && nodeOfSpan(f, o.span); return n && n.startIndex >= k.startIndex && n.endIndex <= k.endIndex; }).map(([name]) => name);
        const skipped = inside.length > 0 && inside.every((n) => skippable.has(n));
        // a branch the fast path skips as a whole may hold anything (what it assigns and is read
        // later is caught below); one the fast path runs must hold only the pattern
        if (stray && !skipped) return `line ${lineOf(f, stray)}: the branch around the matched code holds statements outside the pattern`;
        // the condition goes into the guard, which runs before the matched statements
        const branchCond = k.childForFieldName('condition')!;
        const writtenBefore = writesOf(priorMatched);
        if (identifierNodes(branchCond).some((n) => writtenBefore.has(n.text))) return `line ${lineOf(f, k)}: the branch condition reads what the matched statements before it compute`;
        if (skipped) {
          // only optional ops the kernel does not cover are in the branch (`if head_mask is
          // not None: probs = probs * head_mask`): the fast path runs when the branch does not
          extraGuards.push(`not (${k.childForFieldName('condition')!.text})`);
          condAt.push({ cond: k.childForFieldName('condition')!, at: k.startIndex });
          for (const n of inside) ctx.notTaken.add(n);
          ctx.skipped.push(k);
        } else if (noneMeansAbsent(k, inside, s, opts.noneGroups) && body.every((b) => matchedHere(b) || isRaiseOnly(b))) {
          // `if mask is not None: scores = scores + mask`: with the branch not taken the kernel
          // gets mask=None, which the rule declares the same as the lines being absent
        } else {
          extraGuards.push(`(${k.childForFieldName('condition')!.text})`);
          condAt.push({ cond: k.childForFieldName('condition')!, at: k.startIndex });
          // the branch runs on the fast path: its other assignments run there too, first
          for (const b of body) {
            if (matchedHere(b) || isRaiseOnly(b)) continue;
            fastFirst.push(...dedentedLines(f, b, readsOff.get(b)));
            ctx.runFirst.push(b);
            for (const n of writesOf([b])) firstWrites.push({ name: n, at: b.startIndex });
          }
        }
      }
      continue;
    }
    const before = kids.slice(first, i).filter((x) => !hoisted.includes(x));
    const holdsSite = holdsOther(k.startIndex, k.endIndex);
    // a check that only raises: one on the inputs runs first, on both paths; one on a value the
    // fast path does not compute (`if attn_weights.size() != ...: raise`) stays on the original
    // path only
    if (isRaiseOnly(k) && !holdsSite) {
      const cond = k.childForFieldName('condition')!;
      const written = assignedIn(before);
      if (!identifierNodes(cond).some((n) => written.has(n.text))) hoisted.push(k);
      continue;
    }
    // `if C: ... else: name = None` where C can be evaluated first: the fast path runs when C does
    // not hold, and does what the else branch does
    const elseAssigns = k.type === 'if_statement' ? literalElse(k) : undefined;
    const condition = k.type === 'if_statement' ? k.childForFieldName('condition') : null;
    const elseNames = elseAssigns ? new Set(elseAssigns.map((a) => a.split('=')[0].trim())) : undefined;
    const readBefore = new Set(before.flatMap((b) => identifierNodes(b).map((n) => n.text)));
    if (elseAssigns && condition && !identifierNodes(condition).some((n) => assignedIn(before).has(n.text)) && ![...elseNames!].some((n) => readBefore.has(n))) {
      extraGuards.push(`not (${condition.text})`);
      condAt.push({ cond: condition, at: k.startIndex });
      // before the kernel call, which may read them
      fastFirst.push(...elseAssigns);
      for (const n of elseNames!) firstWrites.push({ name: n, at: k.startIndex });
      continue;
    }
    // a statement that neither reads nor writes what the matched statements before it touch
    // (a bias table gathered between the scores and their use) runs first, on both paths
    if (!holdsSite && commutes(k, before)) { hoisted.push(k); continue; }
    // one that reads only the device or dtype of the scores (T5 builds its position bias with
    // `device=scores.device`) reads them off the query instead, and runs first
    const subs = deviceReads(k, before, false);
    if (subs && !holdsSite && commutes(k, before, new Set(subs.keys()))) { hoisted.push(k); substitutions.set(k, subs); continue; }
    // `if C:` (no else) between the matched statements does nothing when C is false: the fast
    // path runs when it is, if C can be evaluated before the statements run
    const cond = k.type === 'if_statement' && !k.namedChildren.some((c) => c.type === 'else_clause' || c.type === 'elif_clause') ? k.childForFieldName('condition') : null;
    const assignedBefore = cond && assignedIn(kids.slice(first, i));
    if (cond && assignedBefore && !identifierNodes(cond).some((n) => assignedBefore.has(n.text))) {
      extraGuards.push(`not (${cond.text})`);
      condAt.push({ cond, at: k.startIndex });
      continue;
    }
    return `line ${lineOf(f, k)} lies between the matched statements and is not part of the pattern`;
  }
  const start = lineStartIndex(f.source, kids[first].startIndex);
  const end = lineEndIndex(f.source, kids[last].endIndex);
  let original = f.source.text.slice(start, end);
  const hoistedText: string[] = [];
  for (const h of [...hoisted].reverse()) {
    const hs = lineStartIndex(f.source, h.startIndex) - start;
    const he = lineEndIndex(f.source, h.endIndex) - start;
    // `scores.device` -> `query.device`
    hoistedText.unshift(substitute(original.slice(hs, he), start + hs, substitutions.get(h)));
    original = original.slice(0, hs) + original.slice(he).replace(/^\r?\n/, '');
  }
  if (hasMultilineString(kids.slice(first, last + 1))) return 'a multi-line string inside the statements cannot be re-indented safely';
  ctx.range = [kids[first].startIndex, kids[last].endIndex];
  ctx.hoisted = hoisted;
  const guard = renderGuard();
  if (guard === undefined) return ctx.failure!;
  ctx.statements = kids.slice(first, last + 1).filter((_, j) => idx.includes(first + j) && !hoisted.includes(kids[first + j]));
  ctx.region = kids.slice(first, last + 1).filter((k) => !hoisted.includes(k));
  const lines = [...fastFirst, ...code.map((c) => ctx.fill(c))];
  if (ctx.failure) return ctx.failure;
  // the guard runs before anything on the fast path: a condition may not read what the fast
  // path assigns first from code that preceded it (a literal else, a taken branch), nor may the
  // rule's guard, which reads the kernel's operands
  for (const { cond, at } of condAt) {
    const early = identifierNodes(cond).find((n) => firstWrites.some((w) => w.name === n.text && w.at < at));
    if (early) return `the guard would read '${early.text}' before the fast path assigns it`;
  }
  // the last such name in the guard, as the message has always named it
  const earlyOperand = namesIn(guard).reverse().find((n) => firstWrites.some((w) => w.name === n));
  if (earlyOperand) return `the guard would read '${earlyOperand}' before the fast path assigns it`;
  const fastText = [guard, ...lines].join('\n');
  for (const c of ctx.calls) if (fastText.split(c).length > 2) return `the call ${c.length > 60 ? `${c.slice(0, 57)}...` : c} would run more than once on the fast path`;
  const spilled = ctx.spilledStatements();
  {
    // a repeated statement may read only what the fast path has assigned by then, besides what
    // was there before the statements
    const regionStmts = kids.slice(first, last + 1).filter((x) => !hoisted.includes(x));
    const fastWrites = assignedByLines(lines);
    for (const [j, own] of ctx.spilledNodes().entries()) {
      // what the other statements of the region write (the statement's own target only counts
      // where another statement also writes it: then it would read a stale value)
      const regionWrites = writesOf(regionStmts.filter((x) => x.startIndex !== own.startIndex));
      const missing = ctx.readsAround(own).find((n) => regionWrites.has(n) && !fastWrites.has(n));
      if (missing) return `'${missing}' is read where the result is used but only the original statements compute it`;
      for (const t of assignedByLines([spilled[j]])) fastWrites.add(t);
    }
  }
  lines.push(...spilled);
  const escaping = escapingNames(f, kids.slice(first, last + 1).filter((k) => !hoisted.includes(k)), lines, block, kids[last].endIndex, s.rule, () => moduleCallsOf(s));
  if (typeof escaping === 'string') return escaping;
  if (escaping) {
    // read later only when `cond` holds: the fast path runs when it does not
    extraGuards.push(`not ${escaping.cond}`);
    lines.push(...escaping.names.map((n) => `${n} = None  # adopt: read only when ${escaping.cond}`));
  }
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].startsWith(`${RETURN_TARGET} = `)) lines[i] = `return ${lines[i].slice(RETURN_TARGET.length + 3)}`;
    else if (returnsTuple(lines[i])) lines[i] = `return ${returnsTuple(lines[i])}`;
    else if (lines[i].includes(RETURN_TARGET)) return 'the matched value is returned and cannot be named in the rewrite';
  }
  const indent = indentationAt(f.source, kids[first].startIndex);
  const nl = f.newline;
  const fullGuard = [...extraGuards, guard].join(' and ');
  const text = [
    ...hoistedText,
    `${indent}if ${fullGuard}:`,
    ...lines.map((l) => `${indent}    ${l}`),
    `${indent}else:`,
    ...original.split(/\r?\n/).map((l) => (l.trim() ? `    ${l}` : l)),
  ].join(nl);
  return { start, end, text, rule: s.rule, line: s.lines[0], ...(escaping?.edits ? { also: escaping.edits } : {}) };
}

/** Where the file calls a submodule of the site's class (`self.attn(...)` with `self.attn` built
 *  as that class): what reaches its forward. */
function moduleCallsOf(s: Site): Span[] {
  const qual = s.view.module?.qualname;
  if (!qual) return [];
  const out: Span[] = [];
  const walk = (stmts: Stmt[]) => {
    for (const st of stmts) {
      if (st.k === 'op') { if (st.kind === 'module' && !st.via?.length && (st.type ?? []).includes(qual)) out.push(st.span); }
      else if (st.k === 'if') { walk(st.then); walk(st.else); }
      else if (st.k === 'for') walk(st.body);
    }
  };
  for (const m of s.view.file.modules) for (const meth of m.methods) walk(meth.body);
  return out;
}

/** `<ret0of2>, <ret1of2> = K`: a tuple assigned to every element of the returned tuple, in order,
 *  is returned as it is. The expression K, else undefined. */
function returnsTuple(line: string): string | undefined {
  const m = /^([^=]+?)\s*=\s*(.+)$/.exec(line);
  if (!m) return undefined;
  const targets = m[1].split(',').map((t) => t.trim());
  const ok = targets.every((t, i) => t === `${RETURN_TARGET}${i}of${targets.length}`);
  return ok ? m[2] : undefined;
}

/** `text`, which starts at source index `base`, with each node replaced by its text; from the
 *  end, so the offsets of the ones before stay valid. */
function substitute(text: string, base: number, subs?: Map<SyntaxNode, string>): string {
  for (const [node, by] of [...(subs ?? [])].sort((a, b) => b[0].startIndex - a[0].startIndex)) {
    text = text.slice(0, node.startIndex - base) + by + text.slice(node.endIndex - base);
  }
  return text;
}

/** A statement's source lines with its own indentation removed (nested lines keep theirs
 *  relative to it). */
function dedentedLines(f: SynthFile, n: SyntaxNode, subs?: Map<SyntaxNode, string>): string[] {
  const from = lineStartIndex(f.source, n.startIndex);
  // `scores.dtype` -> what the query gives
  const text = substitute(f.source.text.slice(from, lineEndIndex(f.source, n.endIndex)), from, subs);
  const lines = text.split(/\r?\n/);
  const pad = /^\s*/.exec(lines[0])![0].length;
  return lines.map((l) => (l.slice(0, pad).trim() === '' ? l.slice(pad) : l.trimStart()));
}

const PURE_TENSOR_METHODS = new Set(['transpose', 't', 'permute', 'view', 'reshape', 'contiguous', 'float', 'half', 'to', 'type', 'type_as', 'unsqueeze', 'squeeze', 'expand', 'expand_as', 'clone', 'detach', 'flatten', 'size', 'dim']);

/** Whether source text calls a submodule or a method of self (`self.qn(q)`, `self.norm.forward(x)`)
 *  rather than only tensor methods on attributes (`self.mem_k.transpose(1, 2)`). */
function callsModule(text: string): boolean {
  for (const m of text.matchAll(/\bself\.(\w+(?:\.\w+)*)\s*\(/g)) {
    const parts = m[1].split('.');
    if (parts.length === 1 || !PURE_TENSOR_METHODS.has(parts[parts.length - 1])) return true;
  }
  return false;
}

/** The names source lines assign at their start (`a, b = ...` gives a and b). */
function assignedByLines(lines: string[]): Set<string> {
  return new Set(lines.flatMap((l) => (/^\s*([A-Za-z_][\w\s,]*)=[^=]/.exec(l)?.[1] ?? '').split(',').map((x) => x.trim()).filter(Boolean)));
}

/** `if C: raise ...` (no else; nested checks allowed): a check, not computation. */
function isRaiseOnly(n: SyntaxNode): boolean {
  if (n.type === 'raise_statement') return true;
  if (n.type !== 'if_statement' || n.namedChildren.some((c) => c.type === 'else_clause' || c.type === 'elif_clause')) return false;
  const body = n.childForFieldName('consequence')?.namedChildren.filter((c) => c.type !== 'comment') ?? [];
  return body.length > 0 && body.every(isRaiseOnly);
}

/** The else branch of `if C: ... else: a = None` as source lines, when it only assigns literals
 *  to names. */
function literalElse(n: SyntaxNode): string[] | undefined {
  const alts = n.namedChildren.filter((c) => c.type === 'else_clause' || c.type === 'elif_clause');
  if (alts.length !== 1 || alts[0].type !== 'else_clause') return undefined;
  const body = alts[0].childForFieldName('body')?.namedChildren.filter((c) => c.type !== 'comment') ?? [];
  const LITERAL = new Set(['none', 'true', 'false', 'integer', 'float', 'string']);
  const ok = body.length > 0 && body.every((b) => {
    const a = b.type === 'expression_statement' ? b.namedChildren[0] : undefined;
    return a?.type === 'assignment' && a.childForFieldName('left')?.type === 'identifier' && LITERAL.has(a.childForFieldName('right')?.type ?? '');
  });
  return ok ? body.map((b) => b.text) : undefined;
}

/** A statement that can run before `before` without changing either: assignments (possibly
 *  under `if`s) that read nothing `before` writes, write nothing `before` reads or writes, and
 *  call nothing that draws random numbers or changes a value in place. */
/** Source that may draw random numbers: dropout in any spelling, sampling functions. */
const RANDOM = /drop|\brand|bernoulli|noise|\bnormal_?\s*\(|gumbel|multinomial|poisson|uniform_|exponential_/i;

function commutes(stmt: SyntaxNode, before: SyntaxNode[], replaced = new Set<SyntaxNode>()): boolean {
  if (!plainAssignments(stmt) || RANDOM.test(stmt.text) || /_\(|\bself\.\w+(\[[^\]]*\])?\s*=[^=]/i.test(stmt.text)) return false;
  // past a statement that draws random numbers, a submodule call (which may draw too) stays put:
  // moving it would change the order of the draws
  if (before.some((b) => RANDOM.test(b.text)) && callsModule(stmt.text)) return false;
  const written = writesOf([stmt]);
  const beforeWrites = writesOf(before);
  const beforeReads = new Set(before.flatMap((b) => identifierNodes(b).map((n) => n.text)));
  if ([...written].some((n) => beforeReads.has(n) || beforeWrites.has(n))) return false;
  return !identifierNodes(stmt).some((n) => beforeWrites.has(n.text) && ![...replaced].some((r) => n.startIndex >= r.startIndex && n.endIndex <= r.endIndex));
}

/** The attribute part of `x.name` or the name of a keyword argument: not a read of `name`. */
function isAttributeName(n: SyntaxNode): boolean {
  const p = n.parent;
  return !!p && ((p.type === 'attribute' && p.childForFieldName('attribute')?.startIndex === n.startIndex) || (p.type === 'keyword_argument' && p.childForFieldName('name')?.startIndex === n.startIndex));
}

/** `scores.device` / `scores.dtype` in `stmt`, where `before` assigns `scores = matmul(q, ...)`
 *  (or `q @ ...`) from a plain name q: each such attribute node and `q.device` / `q.dtype` to read
 *  instead (a matmul's result has its inputs' device and dtype). Undefined when there are none. */
function deviceReads(stmt: SyntaxNode, before: SyntaxNode[], onFastPath = true): Map<SyntaxNode, string> | undefined {
  // the last assignment to each name in `before`: a matmul of two plain names, or nothing usable
  const sources = new Map<string, { a: string; b: string; bmm: boolean } | null>();
  for (const b of before) {
    // `x = x / 8.0`, `if scale: x = x / torch.full([], d ** 0.5, ...)`: dtype and device stay x's
    if (keepsTensorKind(b, sources)) continue;
    const previous = new Map(sources);
    for (const name of writesOf([b])) sources.set(name, null);
    const a = b.type === 'expression_statement' ? b.namedChildren[0] : undefined;
    if (a?.type !== 'assignment' || a.childForFieldName('left')?.type !== 'identifier') continue;
    let right = a.childForFieldName('right');
    while (right?.type === 'parenthesized_expression' && right.namedChildren.length === 1) right = right.namedChildren[0];
    let operands: (SyntaxNode | null | undefined)[] = [];
    let bmm = false;
    if (right?.type === 'binary_operator' && right.childForFieldName('operator')?.text === '@') operands = [right.childForFieldName('left'), right.childForFieldName('right')];
    else if (right?.type === 'call' && /(^|\.)(matmul|bmm)$/.test(right.childForFieldName('function')?.text ?? '')) {
      operands = right.childForFieldName('arguments')?.namedChildren ?? [];
      bmm = /bmm$/.test(right.childForFieldName('function')!.text);
    } else if (right?.type === 'call' && /(^|\.)baddbmm$/.test(right.childForFieldName('function')?.text ?? '')) {
      // `alibi.baddbmm(batch1=q, batch2=k, ...)`: the product's dtype and device (baddbmm takes
      // one dtype for all three)
      const args = right.childForFieldName('arguments')?.namedChildren ?? [];
      const kw = (n: string) => args.find((x) => x.type === 'keyword_argument' && x.childForFieldName('name')?.text === n)?.childForFieldName('value');
      const pos = args.filter((x) => x.type !== 'keyword_argument');
      const at = right.childForFieldName('function')!.text === 'torch.baddbmm' ? 1 : 0;
      operands = [kw('batch1') ?? pos[at], kw('batch2') ?? pos[at + 1]];
      bmm = true;
    } else if (right?.type === 'call') {
      // a view or reshape of a product has the product's dtype and device
      const fn = right.childForFieldName('function');
      const obj = fn?.type === 'attribute' ? fn.childForFieldName('object') : null;
      const known = obj?.type === 'identifier' ? previous.get(obj.text) : undefined;
      if (known && /^(view|reshape|contiguous)$/.test(fn!.childForFieldName('attribute')?.text ?? '')) sources.set(a.childForFieldName('left')!.text, known);
    }
    const plain = (x: SyntaxNode | null | undefined) => !!x && (x.type === 'identifier' || /^[A-Za-z_]\w*(\.transpose\(\s*-?\d+\s*,\s*-?\d+\s*\))?$/.test(x.text));
    if (operands.length === 2 && plain(operands[0]) && plain(operands[1])) sources.set(a.childForFieldName('left')!.text, { a: operands[0]!.text, b: operands[1]!.text, bmm });
  }
  const beforeWrites = writesOf(before);
  const out = new Map<SyntaxNode, string>();
  for (const n of identifierNodes(stmt)) {
    const src = sources.get(n.text);
    const p = n.parent;
    if (!src || [src.a, src.b].some((x) => beforeWrites.has(x.split('.')[0]))) continue;
    // `m.expand_as(scores)`: expanded to the product's shape, computed from the operands' shapes
    const call = p?.type === 'argument_list' && p.namedChildren.length === 1 ? p.parent : null;
    const fn = call?.type === 'call' ? call.childForFieldName('function') : null;
    if (fn?.type === 'attribute' && fn.childForFieldName('attribute')?.text === 'expand_as' && !src.bmm) {
      const target = fn.childForFieldName('object')!;
      if (identifierNodes(target).some((x) => beforeWrites.has(x.text))) continue;
      out.set(call!, `${target.text}.expand(torch.broadcast_shapes(${src.a}.shape[:-2], ${src.b}.shape[:-2]) + (${src.a}.shape[-2], ${src.b}.shape[-1]))`);
      continue;
    }
    const obj = p?.type === 'attribute' ? p.childForFieldName('object') : null;
    const attr = obj && obj.startIndex === n.startIndex && obj.endIndex === n.endIndex ? p!.childForFieldName('attribute')?.text : undefined;
    if (attr !== 'device' && attr !== 'dtype') continue;
    // the device is the operands'; the dtype is what their product gives under the same autocast
    // state, which adopt_kernels reads without launching a product (a statement that runs on
    // both paths asks a one-element product where the package is missing)
    const product = `torch.${src.bmm ? 'bmm' : 'matmul'}(${src.a}[..., :1, :], ${src.b}[..., :, :1]).dtype`;
    const read = `${KERNELS_ALIAS}.product_dtype(${src.a}, ${src.b})`;
    out.set(p!, attr === 'device' ? `${src.a}.device` : onFastPath ? read : `(${read} if ${KERNELS_ALIAS} is not None else ${product})`);
  }
  return out.size ? out : undefined;
}

/** A statement that only scales names it assigns by a Python number or a 0-d tensor
 *  (`x = x / math.sqrt(d)`, `x = x * torch.full([], s, dtype=x.dtype)`), possibly under an
 *  `if` without else: what it assigns keeps its dtype and device, whichever path runs. */
function keepsTensorKind(b: SyntaxNode, sources: Map<string, unknown>): boolean {
  if (b.type === 'if_statement') {
    if (b.namedChildren.some((c) => c.type === 'else_clause' || c.type === 'elif_clause')) return false;
    const body = b.childForFieldName('consequence')?.namedChildren.filter((c) => c.type !== 'comment') ?? [];
    return body.length > 0 && body.every((x) => keepsTensorKind(x, sources));
  }
  const a = b.type === 'expression_statement' && b.namedChildren.length === 1 ? b.namedChildren[0] : undefined;
  if (a?.type !== 'assignment') return false;
  const left = a.childForFieldName('left');
  let right = a.childForFieldName('right');
  while (right?.type === 'parenthesized_expression' && right.namedChildren.length === 1) right = right.namedChildren[0];
  if (left?.type !== 'identifier' || !sources.get(left.text) || right?.type !== 'binary_operator') return false;
  const op = right.childForFieldName('operator')?.text;
  const [x, y] = [right.childForFieldName('left'), right.childForFieldName('right')];
  return (op === '/' || op === '*') && x?.text === left.text && !!y && (pythonNumber(y) || zeroDimTensor(y));
}

/** An expression whose value is a Python number: literals, `math.sqrt(...)`, `t.size(-1)`,
 *  `float(...)`, and arithmetic on those. */
function pythonNumber(e: SyntaxNode): boolean {
  switch (e.type) {
    case 'integer': case 'float': return true;
    case 'parenthesized_expression': return e.namedChildren.length === 1 && pythonNumber(e.namedChildren[0]);
    case 'unary_operator': return pythonNumber(e.childForFieldName('argument')!);
    case 'binary_operator': return pythonNumber(e.childForFieldName('left')!) && pythonNumber(e.childForFieldName('right')!);
    case 'call': {
      const fn = e.childForFieldName('function')?.text ?? '';
      const args = e.childForFieldName('arguments')?.namedChildren ?? [];
      if (fn === 'float' || fn === 'int') return true;
      if (/^math\.(sqrt|log|exp|pow)$/.test(fn)) return args.every(pythonNumber);
      return /^[A-Za-z_][\w.]*\.(size|dim)$/.test(fn) && args.every((x) => x.type === 'integer' || (x.type === 'unary_operator' && x.text.startsWith('-')));
    }
    default: return false;
  }
}

/** `torch.full([], v, ...)` / `torch.full((), v, ...)`: a 0-d tensor, which takes part in type
 *  promotion only as a scalar does. */
/** `torch.full([], d ** 0.5, dtype=..., device=...)` as a factor: the number it holds, which the
 *  kernel takes as a Python float (no tensor made, nothing launched); any other text as it is. */
function numberInZeroDim(text: string): string {
  // no `torch.full`, nothing to parse
  if (!text.includes('full')) return text;
  const e = parsePython(sourceFromText('<factor>', `(${text})`)).root.namedChildren[0]?.namedChildren[0]?.namedChildren[0];
  if (!e || !zeroDimTensor(e)) return text;
  const value = e.childForFieldName('arguments')!.namedChildren[1];
  return value && value.type !== 'keyword_argument' && pythonNumber(value) ? value.text : text;
}

function zeroDimTensor(e: SyntaxNode): boolean {
  if (e.type !== 'call' || !/^torch\.full$/.test(e.childForFieldName('function')?.text ?? '')) return false;
  const first = e.childForFieldName('arguments')?.namedChildren[0];
  return !!first && /^(\[\s*\]|\(\s*\))$/.test(first.text);
}

/** Assignments, and `if`s holding only assignments, checks that raise, and `pass`. */
function plainAssignments(n: SyntaxNode): boolean {
  switch (n.type) {
    case 'expression_statement': {
      const a = n.namedChildren[0];
      return n.namedChildren.length === 1 && (a?.type === 'assignment' || a?.type === 'augmented_assignment');
    }
    case 'raise_statement': case 'pass_statement': case 'comment': return true;
    case 'if_statement': case 'elif_clause': case 'else_clause': case 'block':
      return n.namedChildren.every((c) => c.type === 'comment' || c === n.childForFieldName('condition') || plainAssignments(c));
    default: return false;
  }
}

/** The names statements assign or mutate: `x = ...`, `a, b = ...`, `m[i] = ...` (writes m). */
function writesOf(stmts: SyntaxNode[]): Set<string> {
  const out = new Set<string>();
  const target = (t: SyntaxNode | null): void => {
    if (!t) return;
    if (t.type === 'identifier') out.add(t.text);
    else if (t.type === 'subscript' || t.type === 'attribute') target(t.childForFieldName(t.type === 'subscript' ? 'value' : 'object'));
    else t.namedChildren.forEach(target);
  };
  const stack = [...stmts];
  while (stack.length) {
    const x = stack.pop()!;
    if (['assignment', 'augmented_assignment', 'for_statement'].includes(x.type)) target(x.childForFieldName('left'));
    // `buf.mul_(2)`, `self.temp.add_(x)`: an in-place method writes its receiver
    if (x.type === 'call') {
      const fn = x.childForFieldName('function');
      if (fn?.type === 'attribute' && /^[a-z]\w*[^_]_$/.test(fn.childForFieldName('attribute')?.text ?? '')) target(fn.childForFieldName('object'));
    }
    stack.push(...x.namedChildren);
  }
  return out;
}

/** Every name the statements assign (targets of assignments, loops and with-as). */
function assignedIn(stmts: SyntaxNode[]): Set<string> {
  const out = new Set<string>();
  const stack = [...stmts];
  while (stack.length) {
    const x = stack.pop()!;
    if (['assignment', 'augmented_assignment', 'for_statement'].includes(x.type)) for (const id of identifierNodes(x.childForFieldName('left') ?? x)) out.add(id.text);
    stack.push(...x.namedChildren);
  }
  return out;
}

function lineOf(f: SynthFile, n: SyntaxNode): number {
  return lineAt(f.source, n.startIndex);
}

function commonBlock(stmts: SyntaxNode[]): SyntaxNode | undefined {
  const chain = (n: SyntaxNode) => { const out: SyntaxNode[] = []; for (let p: SyntaxNode | null = n.parent; p; p = p.parent) if (p.type === 'block' || p.type === 'module') out.push(p); return out; };
  const chains = stmts.map(chain);
  for (const b of chains[0]) {
    if (chains.every((c) => c.some((x) => x.startIndex === b.startIndex && x.endIndex === b.endIndex && x.type === b.type))) {
      return b.type === 'block' ? b : undefined;
    }
  }
  return undefined;
}

function ancestorIn(n: SyntaxNode, block: SyntaxNode): SyntaxNode | undefined {
  for (let x: SyntaxNode | null = n; x; x = x.parent) {
    if (x.parent && x.parent.startIndex === block.startIndex && x.parent.endIndex === block.endIndex && x.parent.type === block.type) return x;
  }
  return undefined;
}

function hasMultilineString(nodes: SyntaxNode[]): boolean {
  const stack = [...nodes];
  while (stack.length) {
    const n = stack.pop()!;
    if (n.type === 'string' && n.text.includes('\n')) return true;
    stack.push(...n.namedChildren);
  }
  return false;
}

/** What the fast path leaves out: names the original statements assign and later code reads. */
type Escape = { names: string[]; cond: string; edits?: Edit[] } | string | undefined;

/**
 * Names the original statements assign that the fast path does not, but later code reads. When
 * every later read sits under one condition (`(ctx, probs) if output_attentions else (ctx,)`),
 * the rewrite is still possible: it runs only when that condition is false, and the name is set
 * to None on the fast path. Otherwise the reason it is not possible.
 */
function escapingNames(f: SynthFile, stmts: SyntaxNode[], fast: string[], block: SyntaxNode, after: number, rule: string, moduleCalls: () => Span[] = () => []): Escape {
  const assigned = new Set<string>();
  const edits: Edit[] = [];
  const collect = (n: SyntaxNode) => {
    if (n.type === 'assignment' || n.type === 'augmented_assignment') {
      const left = n.childForFieldName('left');
      const walk = (t: SyntaxNode | null) => {
        if (!t) return;
        if (t.type === 'identifier') assigned.add(t.text);
        else if (['pattern_list', 'tuple_pattern', 'tuple', 'list_pattern'].includes(t.type)) t.namedChildren.forEach(walk);
      };
      walk(left);
    }
    n.namedChildren.forEach(collect);
  };
  stmts.forEach(collect);
  const fastAssigned = assignedByLines(fast);
  let fn: SyntaxNode | null = block;
  while (fn && fn.type !== 'function_definition') fn = fn.parent;
  const end = fn ? fn.endIndex : f.source.text.length;
  const rest = f.source.text.slice(after, end);
  const names: string[] = [];
  const conds = new Set<string>();
  // `if not C: name = None` after the statements, in their block: past it, name holds their value
  // only when C does (LLaMA: `if not output_attentions: attn_weights = None`)
  const kills = new Map<string, { cond: string; at: number }>();
  for (const k of block.namedChildren) {
    if (k.startIndex < after || k.type !== 'if_statement' || k.namedChildren.some((c) => c.type === 'else_clause' || c.type === 'elif_clause')) continue;
    const m = /^not\s+([A-Za-z_]\w*)$/.exec(k.childForFieldName('condition')?.text ?? '');
    const body = k.childForFieldName('consequence')?.namedChildren.filter((c) => c.type !== 'comment') ?? [];
    const sets = body.map((b) => /^([A-Za-z_]\w*)\s*=\s*None$/.exec(b.text)?.[1]);
    if (m && sets.length && sets.every(Boolean)) for (const n of sets) if (!kills.has(n!)) kills.set(n!, { cond: m[1], at: k.endIndex });
  }
  const isWrite = (n: SyntaxNode) => {
    const a = n.parent;
    return a?.type === 'assignment' && a.childForFieldName('left')?.startIndex === n.startIndex && a.childForFieldName('left')?.endIndex === n.endIndex;
  };
  for (const name of assigned) {
    if (fastAssigned.has(name)) continue;
    const re = new RegExp(`(^|[^\\w.])${name}(?![\\w])`);
    if (!re.test(rest)) continue;
    const why = `'${name}' is computed by the original statements and read later; the fast path does not compute it`;
    const reads = identifierNodes(fn ?? f.root).filter((n) => n.text === name && n.startIndex >= after && n.endIndex <= end && !isWrite(n));
    if (!reads.length) continue;
    const readConds = reads.map((r) => {
      const kill = kills.get(name);
      return kill && r.startIndex >= kill.at ? kill.cond : readCondition(r, fn);
    });
    if (readConds.some((c) => !c)) {
      // returned by a helper whose callers want it only under a flag of theirs: they pass it on
      const flagged = fn ? flagCallers(f, fn, reads, name, rule, moduleCalls) : 'not in a method';
      if (typeof flagged === 'string') return `${why} (${flagged})`;
      conds.add(flagged.param);
      edits.push(...flagged.edits);
    } else for (const c of readConds) conds.add(c!);
    names.push(name);
  }
  if (!names.length) return undefined;
  const [cond] = [...conds];
  if (conds.size !== 1) return `${names.map((n) => `'${n}'`).join(', ')} read later under different conditions; the fast path does not compute them`;
  // the condition must mean the same at the rewrite and at the read
  if (new RegExp(`(^|[^\\w.])${cond}\\s*(=[^=]|\\+=|-=)`).test(rest)) return `'${cond}' is reassigned after the rewritten statements`;
  return { names, cond, ...(edits.length ? { edits } : {}) };
}

// ---- template rendering ---------------------------------------------------------------------

/** A template transposing a value the code already transposed (`{kt}.transpose(-2, -1)` with
 *  `kt` written `k.transpose(-1, -2)`) gives two swaps of the same dimensions: the value itself. */
function undoubleTranspose(text: string): string {
  return text.replace(/\.transpose\((-2|-1), (-2|-1)\)\.transpose\((-2|-1), (-2|-1)\)/g, (m, a, b, c, d) => (a !== b && c !== d ? '' : m));
}

/** Fills `{name}`, `{name.module}`, `{name.<kw>}` placeholders with source text. */
class Render {
  failure?: string;
  range?: [number, number];
  /** Optional ops in a branch the guard excludes: absent on the fast path. */
  readonly notTaken = new Set<string>();
  /** Calls written out again on the fast path: each must appear there once. */
  readonly calls = new Set<string>();
  /** Statements moved ahead of the guard: what they assign is read by its name. */
  hoisted: SyntaxNode[] = [];
  /** The matched statements, where a result inside one may be given a name of its own. */
  statements: SyntaxNode[] = [];
  /** The statements between the first and last matched one that stay in place. */
  region: SyntaxNode[] = [];
  /** Statements of a taken branch that the fast path runs before the kernel call: what they
   *  assign is read by its name. */
  readonly runFirst: SyntaxNode[] = [];
  /** Branches the guard excludes: on the fast path they have not run. */
  readonly skipped: SyntaxNode[] = [];
  /** Results named that way: their statement is repeated on the fast path around the name. */
  readonly spilled: { name: string; node: SyntaxNode; stmt: SyntaxNode }[] = [];
  /** Metavariable → the pattern lines that mention it. */
  private readonly metaLines: Map<string, string[]>;
  constructor(private readonly f: SynthFile, private readonly s: Site, private readonly res: SiteResult, rule?: Rule) {
    this.metaLines = rule ? metaLines(rule) : new Map();
  }

  /** An optional line that is absent, or a name the pattern never bound, or a metavariable
   *  bound only by lines in a branch the fast path does not take. */
  private unbound(name: string): boolean {
    if (this.s.ops[name] === null || (this.s.ops[name] === undefined && this.s.bindings[name] === undefined)) return true;
    const lines = this.metaLines.get(name);
    return this.s.ops[name] === undefined && !!lines?.length && lines.every((l) => this.notTaken.has(l));
  }

  /** A node inside a statement moved ahead of the guard. */
  private inHoisted(node: SyntaxNode): boolean {
    return this.hoisted.some((h) => node.startIndex >= h.startIndex && node.endIndex <= h.endIndex);
  }

  fill(tpl: string): string {
    return undoubleTranspose(this.fillPlaceholders(tpl));
  }

  private fillPlaceholders(tpl: string): string {
    // `{?name:text}`: text when the pattern bound name, nothing when it did not
    tpl = tpl.replace(/\{\?([A-Za-z_]\w*):([^}]*)\}/g, (_m, name: string, text: string) => (this.unbound(name) ? '' : text));
    // `{,kw=name}`: `, kw=<value of name>` when the pattern bound name, nothing when it did not;
    // `{,kw=name!other}`: the same, and nothing when name reads as other does
    // `{,kw=name.part}`: the same with a part of a matched op (`{,softmax_dtype=p.dtype}`), nothing
    // when the op does not have it
    tpl = tpl.replace(/\{,([A-Za-z_]\w*)=([A-Za-z_]\w*)\.([A-Za-z_]\w*)\}/g, (_m, kw: string, name: string, part: string) => this.optionalPart(kw, name, part));
    tpl = tpl.replace(/\{,([A-Za-z_]\w*)=([A-Za-z_]\w*)(?:!([A-Za-z_]\w*))?\}/g, (_m, kw: string, name: string, other?: string) => {
      if (this.unbound(name)) return '';
      const text = this.value(name);
      if (text === undefined) { this.failure ??= `cannot express {${name}} as source text here`; return ''; }
      if (other !== undefined && this.value(other) === text) return '';
      this.res.bindings[name] = text;
      return `, ${kw}=${text}`;
    });
    return tpl.replace(/\{(,)?([A-Za-z_]\w*)(?:\.([A-Za-z_]\w*))?(?:\|([^}]*))?\}/g, (_m, optKw: string | undefined, name: string, part?: string, dflt?: string) => {
      // `{,name.kw}`: `, kw=<its value>` when the matched call passes kw, nothing when it does not
      if (optKw && part) return this.optionalPart(part, name, part);
      // `{name|default}`: the default when an optional line is absent
      const absent = this.unbound(name);
      if (dflt !== undefined && absent) return dflt;
      if (part === 'absent') {
        // a metavariable the pattern bound (a form of a line the kernel does not take)
        if (this.s.ops[name] === undefined && this.s.bindings[name] !== undefined && !this.unbound(name)) {
          this.failure ??= `the kernel call does not cover the form of the code that binds $${name} yet`;
          return '';
        }
        if (this.s.ops[name] === null || this.s.ops[name] === undefined || this.notTaken.has(name)) return '';
        this.failure ??= `the kernel call does not cover '${this.s.ops[name]!.callee}' at line ${this.s.ops[name]!.span.from.line} yet`;
        return '';
      }
      const text = this.value(name, part);
      if (text === undefined) {
        this.failure ??= `cannot express {${name}${part ? `.${part}` : ''}} as source text here`;
        return '?';
      }
      this.res.bindings[part ? `${name}.${part}` : name] = text;
      return text;
    });
  }

  /** `, kw=<value>` of keyword `part` of matched op `name`, nothing when the call does not pass it. */
  private optionalPart(kw: string, name: string, part: string): string {
    const op = this.s.ops[name];
    if (!op || !op.kw.some(([k]) => k === part)) return '';
    const text = this.value(name, part);
    if (text === undefined) { this.failure ??= `cannot express {${name}.${part}} as source text here`; return ''; }
    this.res.bindings[`${name}.${part}`] = text;
    return `, ${kw}=${text}`;
  }

  private value(name: string, part?: string): string | undefined {
    const op = this.s.ops[name];
    if (op !== undefined && op !== null) {
      if (!part) return this.assignedName(op) ?? this.spill(name, op);
      if (part === 'factor') {
        // the multiplicative factor a scaling op applies
        // not the data input: a matched op's value, or the phi that carries it through a branch
        const other = op.args.find((a) => !(a.k === 'ssa' && (Object.values(this.s.ops).some((o) => o?.id === a.id) || this.s.view.phis.has(a.id))));
        const written = other && this.expr(other);
        const t = written === undefined ? undefined : numberInZeroDim(written);
        return t === undefined ? undefined : op.callee === 'div' ? `1.0 / (${t})` : t;
      }
      if (part === 'rank_check') return this.rankCheck(op);
      if (part === 'callable') {
        // what to call: the submodule, or the torch function the op canonicalises
        if (op.kind === 'module') return op.callee.startsWith('%') ? undefined : op.callee;
        return op.kind === 'op' ? `torch.nn.functional.${op.callee}` : op.callee;
      }
      if (part === 'source_callee' || part === 'source_args') {
        // the call as written: `torch.optim.AdamW` and its argument list
        const node = nodeOfSpan(this.f, op.span);
        if (node?.type !== 'call') return undefined;
        if (part === 'source_callee') return node.childForFieldName('function')?.text;
        const args = node.childForFieldName('arguments');
        return args?.type === 'argument_list' ? args.text.slice(1, -1).trim() : undefined;
      }
      if (part === 'train') {
        // whether a dropout applies: a module follows the model's mode; the functional form says
        // so with its `training` argument, which defaults to True
        if (op.kind === 'module') return 'self.training';
        const t = op.kw.find(([k]) => k === 'training')?.[1] ?? op.args[2];
        return t ? this.expr(t) : 'True';
      }
      if (part === 'prob') {
        // a dropout's probability: the module's .p, or the functional call's p
        if (op.kind === 'module') return op.callee.startsWith('%') ? undefined : `${op.callee}.p`;
        const p = op.kw.find(([k]) => k === 'p')?.[1] ?? op.args[1];
        return p ? this.expr(p) : '0.5';
      }
      if (part === 'module') {
        if (op.kind === 'module' && !op.callee.startsWith('%')) return op.callee;
        if (op.kind === 'module') {
          // a lookup in forward (`ACT2FN[self.config.hidden_act](x)`): the lookup, written again
          const call = op.via?.length ? null : nodeOfSpan(this.f, op.span);
          const fn = call?.type === 'call' ? call.childForFieldName('function') : null;
          return fn && /^[A-Za-z_][\w.]*\[[A-Za-z_][\w.]*\]$/.test(fn.text) ? fn.text : undefined;
        }
        // functional GELU: the function called, so the guard judges what runs (an attribute
        // holding F.gelu may be swapped); with `approximate=` given, its name as transformers'
        // hidden_act strings say it
        if (op.kind === 'op' && op.callee === 'gelu') {
          const approx = op.kw.find(([k]) => k === 'approximate')?.[1] ?? op.args[1];
          if (approx) return approx.k === 'const' && approx.v === 'tanh' ? '"gelu_pytorch_tanh"' : approx.k === 'const' && approx.v === 'none' ? '"gelu"' : undefined;
          const call = op.via?.length ? null : nodeOfSpan(this.f, op.span);
          const fn = call?.type === 'call' ? call.childForFieldName('function') : null;
          return fn && /^[A-Za-z_][\w.]*$/.test(fn.text) ? fn.text : '"gelu"';
        }
        // functional dropout: the kernel takes the probability
        const p = op.kw.find(([k]) => k === 'p')?.[1] ?? op.args[1];
        return p ? this.expr(p) : op.callee === 'dropout' ? '0.5' : undefined;
      }
      let kw = op.kw.find(([k]) => k === part)?.[1];
      if (!kw && op.kind === 'module') {
        // a module's setting lives in its constructor: nn.Softmax(dim=-1)
        const ctor = attrOf(this.s.view, op)?.value;
        if (ctor?.k === 'call') kw = ctor.kw.find(([k]) => k === part)?.[1] ?? (part === 'dim' ? ctor.args[0] : undefined);
      }
      return kw ? this.expr(kw) : undefined;
    }
    if (op === null) return undefined;
    const meta = this.s.bindings[name];
    if (meta && part === 'rank_check') {
      const def = meta.k === 'ssa' ? this.s.view.defs.get(meta.id) : undefined;
      return def && this.rankCheck(def);
    }
    return meta ? this.expr(meta) : undefined;
  }

  /** The rank an index of full slices assumes (`x[:, :, :, ::2]`: `x.dim() == 4`); `True` for an
   *  index with `...`, which holds for any rank. */
  private rankCheck(op: Op): string | undefined {
    const idx = op.callee === 'getitem' ? op.args[1] : undefined;
    if (idx?.k !== 'tuple') return undefined;
    if (idx.items.some((e) => e.k === 'name' && e.path === '...')) return 'True';
    const x = this.expr(op.args[0]);
    return x === undefined ? undefined : `${x}.dim() == ${idx.items.length}`;
  }

  /** `x = (o).transpose(1, 2)`: the result `o` of the pattern is part of the last statement, so
   *  the fast path names it and then runs that statement around the name. */
  private spill(name: string, op: Op): string | undefined {
    const node = nodeOfSpan(this.f, op.span);
    const stmt = node && this.statements.find((st) => node.startIndex >= st.startIndex && node.endIndex <= st.endIndex);
    if (!node || !stmt) return undefined;
    const assigns = stmt.type === 'expression_statement' && stmt.namedChildren[0]?.type === 'assignment';
    if (!assigns && stmt.type !== 'return_statement') return undefined;
    const fresh = `_adopt_${name}`;
    if (!this.spilled.some((x) => x.name === fresh)) this.spilled.push({ name: fresh, node, stmt });
    return fresh;
  }

  /** The names a statement holding spilled results reads outside them. */
  readsAround(stmt: SyntaxNode): string[] {
    const inside = this.spilled.filter((x) => x.stmt === stmt).map((x) => x.node);
    return identifierNodes(stmt).filter((n) => !inside.some((x) => n.startIndex >= x.startIndex && n.endIndex <= x.endIndex)).map((n) => n.text);
  }

  /** The statements holding a spilled result, in source order. */
  spilledNodes(): SyntaxNode[] {
    return [...new Set(this.spilled.map((x) => x.stmt))].sort((a, b) => a.startIndex - b.startIndex);
  }

  /** Each statement holding a spilled result, in source order, with the result replaced by its
   *  name (`key_states = self._shape(_adopt_k, -1, bsz)`). */
  spilledStatements(): string[] {
    const stmts = this.spilledNodes();
    return stmts.map((stmt) => {
      let text = stmt.text;
      for (const { name, node } of this.spilled.filter((x) => x.stmt === stmt).sort((a, b) => b.node.startIndex - a.node.startIndex)) {
        const at = node.startIndex - stmt.startIndex;
        text = text.slice(0, at) + name + text.slice(at + (node.endIndex - node.startIndex));
      }
      return text;
    });
  }

  /** How an op inlined from a helper leaves it: -1 when the helper returns its value, i when it
   *  returns it as element i of a tuple (`return q_embed, k_embed`), undefined otherwise or when
   *  the returns disagree. Only ops of a helper called directly from this method. */
  private returnIndex(op: Op): number | undefined {
    if (op.via?.length !== 1 || op.span.file) return undefined;
    const node = nodeOfSpan(this.f, op.span);
    let fn: SyntaxNode | null = node ?? null;
    while (fn && fn.type !== 'function_definition') fn = fn.parent;
    if (!node || !fn) return undefined;
    const local = this.assignedName(op);
    const returns: SyntaxNode[] = [];
    const walk = (n: SyntaxNode) => {
      if (n.type === 'return_statement') returns.push(n);
      else if (n.type !== 'function_definition' && n.type !== 'lambda') n.namedChildren.forEach(walk);
    };
    fn.childForFieldName('body')?.namedChildren.forEach(walk);
    const same = (x: SyntaxNode) => {
      let y = x;
      while (y.type === 'parenthesized_expression' && y.namedChildren.length === 1) y = y.namedChildren[0];
      return (y.startIndex === node.startIndex && y.endIndex === node.endIndex) || (!!local && y.type === 'identifier' && y.text === local);
    };
    const at = new Set<number>();
    for (const r of returns) {
      const v = r.namedChildren[0];
      if (!v) return undefined;
      if (v.type === 'expression_list' || v.type === 'tuple') at.add(v.namedChildren.findIndex(same));
      else at.add(same(v) ? -1 : -2);
    }
    const [i] = [...at];
    return at.size === 1 && i >= -1 ? i : undefined;
  }

  /** The name element i of `a, b = call(...)` (the statement around the call at `site`) gets. */
  private unpackedName(site: Span, i: number): string | undefined {
    const call = nodeOfSpan(this.f, site);
    const stmt = call && statementOf(call);
    const a = stmt?.type === 'expression_statement' ? stmt.namedChildren[0] : undefined;
    const right = a?.type === 'assignment' ? a.childForFieldName('right') : null;
    const left = a?.childForFieldName('left');
    if (!right || !left || right.startIndex !== call!.startIndex || right.endIndex !== call!.endIndex) return undefined;
    if (!['pattern_list', 'tuple_pattern'].includes(left.type)) return undefined;
    const target = left.namedChildren[i];
    return target?.type === 'identifier' ? this.liveName(target.text, call!.endIndex) : undefined;
  }

  /** The variable a statement assigns an op's result to. */
  private assignedName(op: Op): string | undefined {
    const node = nodeOfSpan(this.f, op.span);
    // `a, b = f(x)`: the element ops' spans are the target names themselves
    if (node?.type === 'identifier' && ['pattern_list', 'tuple_pattern'].includes(node.parent?.type ?? '')) return node.text;
    // `x += y`: the op is the augmented assignment
    if (node?.type === 'augmented_assignment') {
      const left = node.childForFieldName('left');
      return left?.type === 'identifier' ? left.text : undefined;
    }
    const stmt = node && statementOf(node);
    if (stmt?.type === 'return_statement' && node) {
      // `return <op>`: the fast path returns its result too
      const value = stmt.namedChildren[0];
      if (value && value.startIndex === node.startIndex && value.endIndex === node.endIndex) return RETURN_TARGET;
      // `return <op>, <op2>`: element i of the returned tuple
      const items = value?.type === 'expression_list' || value?.type === 'tuple' ? value.namedChildren : [];
      const unwrap = (n: SyntaxNode) => { let x = n; while (x.type === 'parenthesized_expression' && x.namedChildren.length === 1) x = x.namedChildren[0]; return x; };
      const i = items.findIndex((it) => { const x = unwrap(it); return x.startIndex === node.startIndex && x.endIndex === node.endIndex; });
      return i >= 0 ? `${RETURN_TARGET}${i}of${items.length}` : undefined;
    }
    const a = stmt?.namedChildren[0];
    if (a?.type !== 'assignment' || !node) return undefined;
    // `q, k, v = qkv[0], qkv[1], qkv[2]`: element i of the right names element i of the left
    const rightList = a.childForFieldName('right');
    const leftList = a.childForFieldName('left');
    if (rightList && leftList && ['expression_list', 'tuple'].includes(rightList.type) && ['pattern_list', 'tuple_pattern'].includes(leftList.type)) {
      const i = rightList.namedChildren.findIndex((x) => x.startIndex === node.startIndex && x.endIndex === node.endIndex);
      const target = i >= 0 && rightList.namedChildren.length === leftList.namedChildren.length ? leftList.namedChildren[i] : undefined;
      return target?.type === 'identifier' ? target.text : undefined;
    }
    // the op must be the whole right-hand side, not a part of it
    let right = a.childForFieldName('right');
    while (right?.type === 'parenthesized_expression' && right.namedChildren.length === 1) right = right.namedChildren[0];
    if (!right || right.startIndex !== node.startIndex || right.endIndex !== node.endIndex) return undefined;
    const left = a.childForFieldName('left');
    return left && /^[\w.]+$/.test(left.text) ? left.text : undefined;
  }

  expr(e: Expr): string | undefined {
    switch (e.k) {
      case 'name':
        if (/^[A-Za-z_]\w*$/.test(e.path)) return this.liveName(e.path);
        return /^[A-Za-z_][\w.]*$/.test(e.path) ? e.path : undefined;
      case 'const':
        if (e.v === null) return 'None';
        if (typeof e.v === 'boolean') return e.v ? 'True' : 'False';
        if (typeof e.v === 'number') return e.raw ?? String(e.v);
        return JSON.stringify(e.v);
      case 'ssa': {
        const phi = this.s.view.phis.get(e.id);
        if (phi) {
          // a value merged from branches lives in the variable the phi is for, if still live; one
          // merged inside an inlined helper and used here is what the call returned
          const p = this.phiVar(e.id);
          if (p && 'site' in p) {
            const v = this.assignedName({ span: p.site } as Op);
            if (v && /^[A-Za-z_]\w*$/.test(v)) return this.liveName(v, indexOf(this.f.source, p.site.to));
            // the call inside the replaced statements (`... + self.get_attention_biases(device)`)
            // is made on the fast path instead, as written
            const call = nodeOfSpan(this.f, p.site);
            if (!call || !this.range || this.inHoisted(call) || call.startIndex < this.range[0] || call.endIndex > this.range[1]) return undefined;
            this.calls.add(call.text);
            return call.text;
          }
          return p && this.liveName(p.v, p.end);
        }
        const found = this.s.view.defs.get(e.id);
        // a value returned by an inlined helper lives where the helper was called; one computed
        // inside a helper the match replaces has no name in this method
        if (found?.via && Object.values(this.s.ops).some((o) => o?.via)) return undefined;
        if (found?.via?.length && found.site) {
          // a value an inlined helper returns: the call's value, or element i of the tuple the
          // call's statement unpacks; anything else computed inside the helper has no name here
          const at = this.returnIndex(found);
          if (at === undefined) return undefined;
          if (at >= 0) return this.unpackedName(found.site, at);
        }
        const def = found?.via && found.site ? { ...found, span: found.site } : found;
        if (!def || (def.span.file ?? this.s.view.file.path) !== this.s.file) return undefined;
        // an op the analysis derived from a larger call (the transpose an einsum canonicalises
        // to) shares that call's span: its text is the call's, not this op's
        const sharesSpan = this.s.view.ops.some((o) => o.id > def.id && o.span.start === def.span.start && o.span.end === def.span.end && (o.span.file ?? '') === (def.span.file ?? ''));
        if (sharesSpan) {
          const [x, a, b] = def.args;
          if (def.callee === 'transpose' && x && a?.k === 'const' && b?.k === 'const') {
            const base = this.expr(x);
            return base === undefined ? undefined : `${base}.transpose(${a.raw ?? a.v}, ${b.raw ?? b.v})`;
          }
          // `beta * input` of a baddbmm
          if (def.callee === 'mul' && def.args.length === 2 && !def.kw.length) {
            const [l, r] = def.args.map((e2) => this.expr(e2));
            return l === undefined || r === undefined ? undefined : `(${l} * ${r})`;
          }
          return undefined;
        }
        const node = nodeOfSpan(this.f, def.span);
        if (!node) return undefined;
        const first = this.runFirst.findIndex((r) => node.startIndex >= r.startIndex && node.endIndex <= r.endIndex);
        if (first >= 0) {
          // assigned by a statement the fast path runs first: by its name, unless a later one
          // of those reassigns it
          const v = this.assignedName(def);
          if (!v || !/^[A-Za-z_]\w*$/.test(v) || this.runFirst.slice(first + 1).some((r) => writesOf([r]).has(v))) return undefined;
          return v;
        }
        if (this.range && !this.inHoisted(node) && node.startIndex >= this.range[0] && node.endIndex <= this.range[1]) {
          // a helper's call, or an operand calling a module (`self.qn(q)`: a BatchNorm's running
          // statistics, a dropout's draw), written out again: each must run once
          if (found?.via?.length || callsModule(node.text)) this.calls.add(node.text);
          return this.writtenOut(node);
        }
        const v = this.assignedName(def);
        // the variable may have been reassigned since: then an alias may still hold the value
        return v && /^[A-Za-z_]\w*$/.test(v) ? this.liveName(v, node.endIndex) : v;
      }
      case 'tuple': {
        const items = e.items.map((x) => this.expr(x));
        return items.every((x) => x !== undefined) ? `(${items.join(', ')}${items.length === 1 ? ',' : ''})` : undefined;
      }
      default: return undefined;
    }
  }

  /** An operand inside the replaced statements written out again on the fast path: it may not
   *  read what the statements before it compute (the fast path does not run them), except the
   *  dtype or device of scores, read off the query instead (GPT-2's
   *  `torch.full([], d ** 0.5, dtype=attn_weights.dtype)`). */
  private writtenOut(node: SyntaxNode): string | undefined {
    const at = this.region.findIndex((k) => k.startIndex <= node.startIndex && node.endIndex <= k.endIndex);
    const prior = (at < 0 ? [] : this.region.slice(0, at)).filter((k) => !this.runFirst.some((r) => r.startIndex >= k.startIndex && r.endIndex <= k.endIndex) && !this.skipped.includes(k));
    const written = writesOf(prior);
    const offending = identifierNodes(node).filter((n) => written.has(n.text) && !isAttributeName(n));
    if (!offending.length) return node.text;
    const subs = deviceReads(node, prior) ?? new Map<SyntaxNode, string>();
    const covered = (n: SyntaxNode) => [...subs.keys()].some((r) => n.startIndex >= r.startIndex && n.endIndex <= r.endIndex);
    const stale = offending.find((n) => !covered(n));
    if (stale) {
      this.failure ??= `'${stale.text}' read at line ${lineOf(this.f, stale)} is computed by the original statements, which the fast path does not run`;
      return undefined;
    }
    return substitute(node.text, node.startIndex, subs);
  }

  /**
   * A parameter or local the IR names may have been reassigned before the rewritten code runs
   * (`residual = hidden_states; hidden_states = self.fc(hidden_states)`): then the value lives
   * in the alias, if one still holds it.
   */
  private liveName(name: string, definedAt = -1): string | undefined {
    const at = this.range?.[0] ?? this.opStart();
    const fn = this.enclosingFunction(at);
    if (!fn) return name;
    const assigns: { target: string; value: string; at: number }[] = [];
    const walk = (n: SyntaxNode) => {
      if (n.startIndex >= at) return;
      if (n.type === 'function_definition' && n !== fn) return;
      // the statement the op is in assigns its target only after the op ran: not a reassignment
      const enclosing = n.type !== 'for_statement' && n.endIndex > at;
      if (!enclosing && (n.type === 'assignment' || n.type === 'augmented_assignment' || n.type === 'for_statement')) {
        const left = n.childForFieldName('left');
        const right = n.childForFieldName('right');
        const targets: string[] = [];
        const collect = (t: SyntaxNode | null) => {
          if (!t) return;
          if (t.type === 'identifier') targets.push(t.text);
          else if (['pattern_list', 'tuple_pattern', 'tuple', 'list_pattern'].includes(t.type)) t.namedChildren.forEach(collect);
        };
        collect(left);
        for (const t of targets) assigns.push({ target: t, value: n.type === 'assignment' && targets.length === 1 ? right?.text ?? '' : '', at: n.startIndex });
      }
      n.namedChildren.forEach(walk);
    };
    walk(fn.childForFieldName('body')!);
    const firstReassign = assigns.find((a) => a.target === name && a.at > definedAt);
    if (!firstReassign) return name;
    for (const a of assigns) {
      if (a.value !== name || a.at > firstReassign.at || a.at < definedAt) continue;
      if (!assigns.some((b) => b.target === a.target && b.at > a.at)) return a.target;
    }
    return undefined;
  }

  private opStart(): number {
    const op = Object.values(this.s.ops).find((o): o is Op => !!o);
    const node = op && nodeOfSpan(this.f, op.span);
    return node?.startIndex ?? 0;
  }

  private enclosingFunction(index: number): SyntaxNode | undefined {
    for (let n: SyntaxNode | null = nodeAt(this.f.root, index, index) ?? null; n; n = n.parent) {
      if (n.type === 'function_definition') return n;
    }
    return undefined;
  }

  private phiVar(id: number): { v: string; end: number } | { site: Span } | undefined {
    type Found = { v: string; end: number } | { site: Span } | undefined;
    const find = (stmts: import('../dsl/ir.js').Stmt[]): Found => {
      for (const st of stmts) {
        if (st.k === 'if' || st.k === 'for') {
          const p = st.phis.find((x) => x.id === id);
          if (p) {
            // a branch or loop of an inlined helper: its variables are the helper's, not ours
            const site = inlinedSite(st, this.s.view.method.span);
            if (site === null) return undefined;
            if (site) return { site };
            return p.v === 'return' || !/^[A-Za-z_]\w*$/.test(p.v) ? undefined : { v: p.v, end: indexOf(this.f.source, st.span.to) };
          }
          const inner = st.k === 'if' ? find(st.then) ?? find(st.else) : find(st.body);
          if (inner) return inner;
        }
      }
      return undefined;
    };
    return find(this.s.view.method.body);
  }
}

/** Where a branch or loop of an inlined helper was called from: the call span its ops carry
 *  (their call lies outside the statement); undefined for the method's own statement; null when
 *  it is inlined but the call cannot be told (a helper in another file, no ops inside). */
function inlinedSite(st: import('../dsl/ir.js').IfStmt | import('../dsl/ir.js').ForStmt, own: Span): Span | null | undefined {
  const ops: Op[] = [];
  const walk = (xs: import('../dsl/ir.js').Stmt[]) => { for (const x of xs) { if (x.k === 'op') ops.push(x); else if (x.k === 'if') { walk(x.then); walk(x.else); } else if (x.k === 'for') walk(x.body); } };
  walk(st.k === 'if' ? [...st.then, ...st.else] : st.body);
  const outside = ops.filter((o) => o.via?.length && o.site && !(o.site.start >= st.span.start && o.site.end <= st.span.end));
  const sites = new Set(outside.map((o) => `${o.site!.start}:${o.site!.end}`));
  if (sites.size === 1) return st.span.file ? null : outside[0].site!;
  if (sites.size > 1) return null;
  return st.span.file || st.span.start < own.start || st.span.end > own.end ? null : undefined;
}
