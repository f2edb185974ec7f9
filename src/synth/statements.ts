// Statement planning: the matched statements of a site, and those between them, become one
// `if <guard>: <fast path> else: <original statements>` block; what lies between is run first,
// guarded on, or makes the site unrewritable, with the reason.
import type { Site } from '../match/matcher.js';
import { metaLines, type Rule } from '../match/rule.js';
import { sameNode, type SyntaxNode } from '../parse/python.js';
import type { Edit } from './edits.js';
import { escapingNames, moduleCallsOf } from './escape.js';
import { RETURN_TARGET } from './expressions.js';
import { alternativesOf, ancestorIn, assignedByLines, callRunTwice, assignedIn, commonBlock, commutes, dedentedLines, deviceReads, hasMultilineString, isRaiseOnly, literalElse, RANDOM, substitute, writesOf } from './region.js';
import { identifierNodes, indentationAt, indentUnitAt, lineAt, lineEndIndex, lineStartIndex, namesIn, nodeOfSpan, statementOf, type SynthFile } from './source.js';
import type { Render } from './template.js';
import { ifHeader, wrapCall } from './wrap.js';

/** Whether another site's matched code lies within a source range. */
export type HoldsOther = (start: number, end: number) => boolean;

export interface StatementOptions {
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
export function linesWithMeta(rule: Rule, meta: string): Set<string> {
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

/** The Linear submodules the site calls (`self.lm_head`): their outputs are on their inputs' device. */
function linearCallees(s: Site): Set<string> {
  return new Set(Object.values(s.ops).flatMap((o) => (o?.kind === 'module' && (o.type ?? []).some((t) => /(^|\.)Linear$/.test(t)) ? [o.callee] : [])));
}

/** What planning a region of statements has gathered so far. */
interface Region {
  f: SynthFile; s: Site; ctx: Render; opts: StatementOptions; holdsOther: HoldsOther;
  /** The block's statements (comments left out), the matched ones' top statements and indexes. */
  kids: SyntaxNode[]; top: SyntaxNode[]; stmts: SyntaxNode[]; idx: number[]; first: number; last: number; block: SyntaxNode;
  extraGuards: string[];
  /** Statements moved ahead of the guard, and the reads they make off the query instead. */
  hoisted: SyntaxNode[];
  /** Clauses of `if` chains that do not run where the fast path runs. */
  untaken: SyntaxNode[];
  substitutions: Map<SyntaxNode, Map<SyntaxNode, string>>;
  /** Lines the fast path runs before the kernel call. */
  fastFirst: string[];
  /** What the fast path assigns before the kernel runs, and where in the original; the
   *  conditions the guard reads, and where in the original they are evaluated. */
  firstWrites: { name: string; at: number }[];
  condAt: { cond: SyntaxNode; at: number }[];
  /** Optional ops the rewrite requires to be absent (`{h.absent}`), or leaves to the original. */
  skippable: Set<string>;
}

export function planStatements(f: SynthFile, s: Site, code: string[], renderGuard: () => string | undefined, ctx: Render, nodes: SyntaxNode[], holdsOther: HoldsOther = () => false, opts: StatementOptions = {}): Edit | string {
  const leftOut = opts.leftOut ?? new Set<string>();
  const found = nodes.map((n) => statementOf(n));
  if (found.some((x) => !x)) return 'a matched op is not inside a statement';
  const stmts = found as SyntaxNode[];
  // Bring every statement up to one common block.
  const block = commonBlock(stmts);
  if (!block) return 'the matched statements are not in one function body';
  const top = stmts.map((x) => ancestorIn(x, block)!);
  const kids = block.namedChildren.filter((c) => c.type !== 'comment');
  const idx = top.map((t) => kids.findIndex((k) => k.startIndex === t.startIndex && k.endIndex === t.endIndex));
  const r: Region = {
    f, s, ctx, opts, holdsOther, kids, top, stmts, idx, first: Math.min(...idx), last: Math.max(...idx), block,
    extraGuards: [], hoisted: [], untaken: [], substitutions: new Map(), fastFirst: [], firstWrites: [], condAt: [],
    skippable: new Set([...code.join('\n').matchAll(/\{([A-Za-z_]\w*)\.absent\}/g)].map((m) => m[1]).concat([...leftOut])),
  };
  for (let i = r.first; i <= r.last; i++) {
    const failure = idx.includes(i) ? matchedBranch(r, i) : betweenStatement(r, i);
    if (failure) return failure;
  }
  return assemble(r, code, renderGuard);
}

/** The clause of `if c0: ... elif c1: ... else: ...` holding the matched statements: the fast
 *  path runs where the chain takes that clause (the original code, every other clause included,
 *  runs otherwise), so the guard holds each earlier condition false and the clause's own true, in
 *  the order the chain tests them. A reason when the matched code is spread over several clauses. */
function takenBranch(k: SyntaxNode, stmts: SyntaxNode[]): { block: SyntaxNode | null; hasAlternatives: boolean; conds: { cond: SyntaxNode; holds: boolean }[]; untaken: SyntaxNode[] } | string {
  const alts = alternativesOf(k);
  const clauses = [
    { cond: k.childForFieldName('condition'), body: k.childForFieldName('consequence') },
    ...alts.map((c) => ({ cond: c.type === 'elif_clause' ? c.childForFieldName('condition') : null, body: c.childForFieldName(c.type === 'elif_clause' ? 'consequence' : 'body') })),
  ];
  const hasAlternatives = alts.length > 0;
  const within = (n: SyntaxNode, b: SyntaxNode | null | undefined) => !!b && n.startIndex >= b.startIndex && n.endIndex <= b.endIndex;
  const here = stmts.filter((m) => within(m, k));
  const j = clauses.findIndex((c) => here.length > 0 && here.every((m) => within(m, c.body)));
  if (j < 0) return `the matched code is spread over ${clauses.length > 2 ? 'several clauses of an if/elif chain' : 'both branches of an if/else'}`;
  const conds = clauses.slice(0, j + 1).flatMap((c, i) => (c.cond ? [{ cond: c.cond, holds: i === j }] : []));
  const untaken = clauses.flatMap((c, i) => (i !== j && c.body ? [c.body] : []));
  return { block: clauses[j].body, hasAlternatives, conds, untaken };
}

/** The operands of a chain of `and` (the condition itself when it is not one). */
function conjuncts(c: SyntaxNode): SyntaxNode[] {
  let n = c;
  while (n.type === 'parenthesized_expression' && n.namedChildren.length === 1) n = n.namedChildren[0];
  if (n.type !== 'boolean_operator' || n.childForFieldName('operator')?.text !== 'and') return [n];
  return [n.childForFieldName('left'), n.childForFieldName('right')].flatMap((x) => (x ? conjuncts(x) : []));
}

/** `not (c)` as it would be written by hand: `x is None` for `x is not None`, `not x` for a name. */
function negation(c: string): string {
  const none = /^([A-Za-z_][\w.]*) is not None$/.exec(c);
  if (none) return `${none[1]} is None`;
  return /^[A-Za-z_][\w.]*$/.test(c) ? `not ${c}` : `not (${c})`;
}

/** A matched top statement: when it is `if cond:` (with or without an else) around the matched code, what the
 *  guard and the fast path take from the branch; a failure when they cannot. */
function matchedBranch(r: Region, i: number): string | undefined {
  const { f, s, ctx, kids, top, stmts, idx, first } = r;
  const k = kids[i];
  // A matched op inside `if cond:` (no else) holds on the path where cond holds.
  if (k.type !== 'if_statement' || top.some((t, j) => t.startIndex === k.startIndex && stmts[j].startIndex === k.startIndex)) return undefined;
  const taken = takenBranch(k, stmts);
  if (typeof taken === 'string') return `line ${lineOf(f, k)}: ${taken}`;
  // every statement of the branch must be a matched one: other code there (a mask
  // reshaped under a nested if) would be skipped by the fast path
  const body = taken.block?.namedChildren.filter((c) => c.type !== 'comment') ?? [];
  // a check that only raises is not code the fast path needs, nor is a plain assignment
  // the matched code reads inline (`causal_mask = attention_mask[..., :k_len]`) that
  // commutes with the statements before it
  const matchedHere = (b: SyntaxNode) => stmts.some((m) => m.startIndex === b.startIndex && m.endIndex === b.endIndex);
  const priorMatched = kids.slice(first, i).filter((x) => idx.includes(kids.indexOf(x)));
  // a statement that reads only the device or dtype of the scores (GPT-2's mask value,
  // `torch.finfo(attn_weights.dtype).min`) reads them off the query instead
  const readsOff = new Map<SyntaxNode, Map<SyntaxNode, string>>();
  const runsFirst = (b: SyntaxNode, j: number) => {
    const prior = [...kids.slice(first, i).filter((x) => !r.hoisted.includes(x)), ...body.slice(0, j).filter(matchedHere)];
    if (commutes(b, prior)) return true;
    const subs = deviceReads(b, prior, true, linearCallees(s));
    if (!subs || !commutes(b, prior, new Set(subs.keys()))) return false;
    readsOff.set(b, subs);
    return true;
  };
  // matched code nested deeper in the branch (`if flag: k = ...`) runs under a condition the
  // guard does not ask for
  const nested = body.find((b) => !matchedHere(b) && stmts.some((m) => m.startIndex >= b.startIndex && m.endIndex <= b.endIndex));
  if (nested) return `line ${lineOf(f, nested)}: matched code is nested under a statement of the branch`;
  const stray = body.find((b, j) => !matchedHere(b) && !isRaiseOnly(b) && !runsFirst(b, j));
  const inside = Object.entries(s.ops).filter(([, o]) => { const n = o && nodeOfSpan(f, o.span); return n && n.startIndex >= k.startIndex && n.endIndex <= k.endIndex; }).map(([name]) => name);
  // with an else, the fast path can only stand for the branch the matched code is in
  const skipped = !taken.hasAlternatives && inside.length > 0 && inside.every((n) => r.skippable.has(n));
  // a branch the fast path skips as a whole may hold anything (what it assigns and is read
  // later is caught below); one the fast path runs must hold only the pattern
  if (stray && !skipped) return `line ${lineOf(f, stray)}: the branch around the matched code holds statements outside the pattern`;
  // the conditions go into the guard, which runs before the matched statements
  const branchCond = k.childForFieldName('condition')!;
  const writtenBefore = writesOf(priorMatched);
  if (taken.conds.some(({ cond }) => identifierNodes(cond).some((n) => writtenBefore.has(n.text)))) return `line ${lineOf(f, k)}: the branch condition reads what the matched statements before it compute`;
  if (skipped) {
    // only optional ops the kernel does not cover are in the branch (`if head_mask is
    // not None: probs = probs * head_mask`): the fast path runs when the branch does not
    r.extraGuards.push(`not (${branchCond.text})`);
    r.condAt.push({ cond: branchCond, at: k.startIndex });
    for (const n of inside) ctx.notTaken.add(n);
    ctx.skipped.push(k);
  } else if (!taken.hasAlternatives && noneMeansAbsent(k, inside, s, r.opts.noneGroups) && body.every((b) => matchedHere(b) || isRaiseOnly(b))) {
    // `if mask is not None: scores = scores + mask`: with the branch not taken the kernel
    // gets mask=None, which the rule declares the same as the lines being absent
  } else {
    // a condition that draws random numbers (`random.random() < p`) would draw again in the
    // original code whenever a later part of the guard fails
    const random = taken.conds.find(({ cond }) => RANDOM.test(cond.text) && cond.text.includes('('));
    if (random) return `line ${lineOf(f, random.cond)}: the branch condition draws random numbers, and the guard would draw them again`;
    // the other clauses do not run where the fast path does: what they assign is not left out
    r.untaken.push(...taken.untaken);
    if (taken.block) ctx.takenClauses.push(taken.block);
    const negated = taken.conds.filter((c) => !c.holds).map((c) => c.cond.text);
    for (const { cond, holds } of taken.conds) {
      // `not (a and b)` says nothing more where `not (a)` is also required
      if (!holds && conjuncts(cond).some((c) => c.text !== cond.text && negated.includes(c.text))) continue;
      r.extraGuards.push(holds ? `(${cond.text})` : negation(cond.text));
      r.condAt.push({ cond, at: k.startIndex });
    }
    // the branch runs on the fast path: its other assignments run there too, first
    for (const b of body) {
      if (matchedHere(b) || isRaiseOnly(b)) continue;
      r.fastFirst.push(...dedentedLines(f, b, readsOff.get(b)));
      ctx.runFirst.push(b);
      for (const n of writesOf([b])) r.firstWrites.push({ name: n, at: b.startIndex });
    }
  }
  return undefined;
}

/** A statement between the matched ones: moved ahead of the guard, guarded on, or taken over
 *  by the fast path; a failure when none of these is sound. */
function betweenStatement(r: Region, i: number): string | undefined {
  const { f, kids, first } = r;
  const k = kids[i];
  const before = kids.slice(first, i).filter((x) => !r.hoisted.includes(x));
  const holdsSite = r.holdsOther(k.startIndex, k.endIndex);
  // a check that only raises: one on the inputs runs first, on both paths; one on a value the
  // fast path does not compute (`if attn_weights.size() != ...: raise`) stays on the original
  // path only
  if (isRaiseOnly(k) && !holdsSite) {
    // what the check reads: the `if`'s condition, or all of an `assert`
    const cond = k.type === 'if_statement' ? k.childForFieldName('condition')! : k;
    const written = assignedIn(before);
    if (!identifierNodes(cond).some((n) => written.has(n.text))) r.hoisted.push(k);
    return undefined;
  }
  // `if C: ... else: name = None` where C can be evaluated first: the fast path runs when C does
  // not hold, and does what the else branch does
  const elseAssigns = k.type === 'if_statement' ? literalElse(k) : undefined;
  const condition = k.type === 'if_statement' ? k.childForFieldName('condition') : null;
  const elseNames = elseAssigns ? new Set(elseAssigns.map((a) => a.split('=')[0].trim())) : undefined;
  const readBefore = new Set(before.flatMap((b) => identifierNodes(b).map((n) => n.text)));
  if (elseAssigns && condition && !identifierNodes(condition).some((n) => assignedIn(before).has(n.text)) && ![...elseNames!].some((n) => readBefore.has(n))) {
    r.extraGuards.push(`not (${condition.text})`);
    r.condAt.push({ cond: condition, at: k.startIndex });
    // before the kernel call, which may read them
    r.fastFirst.push(...elseAssigns);
    for (const n of elseNames!) r.firstWrites.push({ name: n, at: k.startIndex });
    return undefined;
  }
  // a statement that neither reads nor writes what the matched statements before it touch
  // (a bias table gathered between the scores and their use) runs first, on both paths
  if (!holdsSite && commutes(k, before)) { r.hoisted.push(k); return undefined; }
  // one that reads only the device or dtype of the scores (T5 builds its position bias with
  // `device=scores.device`) reads them off the query instead, and runs first
  const subs = deviceReads(k, before, false, linearCallees(r.s));
  if (subs && !holdsSite && commutes(k, before, new Set(subs.keys()))) { r.hoisted.push(k); r.substitutions.set(k, subs); return undefined; }
  // `if C:` (no else) between the matched statements does nothing when C is false: the fast
  // path runs when it is, if C can be evaluated before the statements run
  const cond = k.type === 'if_statement' && !alternativesOf(k).length ? k.childForFieldName('condition') : null;
  const assignedBefore = cond && assignedIn(kids.slice(first, i));
  if (cond && assignedBefore && !identifierNodes(cond).some((n) => assignedBefore.has(n.text))) {
    r.extraGuards.push(`not (${cond.text})`);
    r.condAt.push({ cond, at: k.startIndex });
    return undefined;
  }
  return `line ${lineOf(f, k)} lies between the matched statements and is not part of the pattern`;
}

/** The edit: hoisted statements, then `if <guards>: <fast path> else: <original statements>`. */
function assemble(r: Region, code: string[], renderGuard: () => string | undefined): Edit | string {
  const { f, s, ctx, kids, first, last, hoisted } = r;
  const start = lineStartIndex(f.source, kids[first].startIndex);
  const end = lineEndIndex(f.source, kids[last].endIndex);
  let original = f.source.text.slice(start, end);
  const hoistedText: string[] = [];
  for (const h of [...hoisted].reverse()) {
    // the comment lines right above a statement, at its indentation, go with it
    let hs = lineStartIndex(f.source, h.startIndex) - start;
    const own = indentationAt(f.source, h.startIndex);
    const commentAbove = (line: string) => line.startsWith(`${own}#`) && !/^\s*#\s*(type:|noqa|pragma|fmt:)/.test(line);
    for (let above = original.lastIndexOf('\n', hs - 2) + 1; hs > 0 && commentAbove(original.slice(above, hs).replace(/\r?\n$/, '')); above = original.lastIndexOf('\n', hs - 2) + 1) hs = above;
    const he = lineEndIndex(f.source, h.endIndex) - start;
    // `scores.device` -> `query.device`
    hoistedText.unshift(substitute(original.slice(hs, he), start + hs, r.substitutions.get(h)));
    // one blank line where the statement stood between two
    const rest = original.slice(he).replace(/^\r?\n/, '');
    original = original.slice(0, hs) + (/(^|\n)[ \t]*\r?\n$/.test(original.slice(0, hs)) ? rest.replace(/^[ \t]*\r?\n/, '') : rest);
  }
  if (hasMultilineString(kids.slice(first, last + 1))) return 'a multi-line string inside the statements cannot be re-indented safely';
  ctx.range = [kids[first].startIndex, kids[last].endIndex];
  ctx.hoisted = hoisted;
  const guard = renderGuard();
  if (guard === undefined) return ctx.failure!;
  ctx.statements = kids.slice(first, last + 1).filter((_, j) => r.idx.includes(first + j) && !hoisted.includes(kids[first + j]));
  ctx.region = kids.slice(first, last + 1).filter((k) => !hoisted.includes(k));
  const lines = fastPath(r, code, guard);
  if (typeof lines === 'string') return lines;
  const escaping = escapingNames(f, ctx.region, lines, r.block, kids[last].endIndex, s.rule, () => moduleCallsOf(s), r.untaken);
  if (typeof escaping === 'string') return escaping;
  if (escaping) {
    // read later only when `cond` holds: the fast path runs when it does not
    r.extraGuards.push(`not ${escaping.cond}`);
    const when = escaping.askedByCallers ? 'a caller asks for attentions' : escaping.cond;
    lines.push(...escaping.names.map((n) => `${n} = None  # adopt: read only when ${when}`));
  }
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].startsWith(`${RETURN_TARGET} = `)) lines[i] = `return ${lines[i].slice(RETURN_TARGET.length + 3)}`;
    else if (returnsTuple(lines[i])) lines[i] = `return ${returnsTuple(lines[i])}`;
    else if (lines[i].includes(RETURN_TARGET)) return 'the matched value is returned and cannot be named in the rewrite';
  }
  const indent = indentationAt(f.source, kids[first].startIndex);
  // one level deeper as the file indents: a tab in a file indented with tabs
  const unit = indentUnitAt(f.source, kids[first].startIndex);
  const conditions = [...r.extraGuards, guard].filter(Boolean);
  // with nothing to check, the fast path replaces the statements outright
  const width = f.lineLength;
  const text = (conditions.length ? [
    ...hoistedText,
    ...ifHeader(indent, conditions, width, unit),
    ...lines.flatMap((l) => wrapCall(`${indent}${unit}`, l, width, unit)),
    `${indent}else:`,
    ...original.split(/\r?\n/).map((l) => (l.trim() ? `${unit}${l}` : l)),
  ] : [...hoistedText, ...lines.flatMap((l) => wrapCall(indent, l, width, unit))]).join(f.newline);
  return { start, end, text, rule: s.rule, line: s.lines[0], ...(escaping?.edits ? { also: escaping.edits } : {}) };
}

/** The fast path's lines: what runs first, the filled template, and the statements repeated
 *  around a named result; a failure when the guard or a line would read what is not there yet. */
function fastPath(r: Region, code: string[], guard: string): string[] | string {
  const { ctx } = r;
  const lines = [...r.fastFirst, ...code.map((c) => ctx.fillCode(c))];
  if (ctx.failure) return ctx.failure;
  // the guard runs before anything on the fast path: a condition may not read what the fast
  // path assigns first from code that preceded it (a literal else, a taken branch), nor may the
  // rule's guard, which reads the kernel's operands
  for (const { cond, at } of r.condAt) {
    const early = identifierNodes(cond).find((n) => r.firstWrites.some((w) => w.name === n.text && w.at < at));
    if (early) return `the guard would read '${early.text}' before the fast path assigns it`;
  }
  // the last such name in the guard, as the message has always named it
  const earlyOperand = namesIn(guard).reverse().find((n) => r.firstWrites.some((w) => w.name === n));
  if (earlyOperand) return `the guard would read '${earlyOperand}' before the fast path assigns it`;
  const fastText = [guard, ...lines].join('\n');
  const twice = callRunTwice(ctx.calls, fastText);
  if (twice) return `the call ${twice.length > 60 ? `${twice.slice(0, 57)}...` : twice} would run more than once on the fast path`;
  const spilled = ctx.spilledStatements();
  // a repeated statement may read only what the fast path has assigned by then, besides what
  // was there before the statements
  const fastWrites = assignedByLines(lines);
  for (const [j, own] of ctx.spilledNodes().entries()) {
    // what the other statements of the region write (the statement's own target only counts
    // where another statement also writes it: then it would read a stale value)
    // (one in a clause of an `if` chain the fast path takes: what the rest of that clause writes)
    const holder = ctx.region.find((x) => own.startIndex >= x.startIndex && own.endIndex <= x.endIndex);
    const clause = holder && !sameNode(holder, own) ? own.parent?.namedChildren.filter((c) => !sameNode(c, own)) ?? [] : [];
    const regionWrites = writesOf([...ctx.region.filter((x) => !holder || !sameNode(x, holder)), ...clause]);
    const missing = ctx.readsAround(own).find((n) => regionWrites.has(n) && !fastWrites.has(n));
    if (missing) return `'${missing}' is read where the result is used but only the original statements compute it`;
    for (const t of assignedByLines([spilled[j]])) fastWrites.add(t);
  }
  lines.push(...spilled);
  return lines;
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

function lineOf(f: SynthFile, n: SyntaxNode): number {
  return lineAt(f.source, n.startIndex);
}
