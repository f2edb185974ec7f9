// Expression planning: how a value of the IR (a parameter, a result the matched code computes, a
// value merged from branches or returned by an inlined helper) is written as source text where
// the rewrite runs, given which statements the fast path runs first, moves or replaces.
import type { Expr, ForStmt, IfStmt, Op, Span, Stmt } from '../dsl/ir.js';
import { ABSENT_IF_NONE } from '../analysis/optional-add.js';
import type { Site } from '../match/matcher.js';
import type { SyntaxNode } from '../parse/python.js';
import { callsModule, deviceReads, isAttributeName, substitute, writesOf } from './region.js';
import { identifierNodes, indexOf, lineAt, nodeAt, nodeOfSpan, statementOf, type SynthFile } from './source.js';

/** A constant as Python source (`None`, `True`, a number as written, a string). */
export function constText(e: Extract<Expr, { k: 'const' }>): string {
  if (e.v === null) return 'None';
  if (typeof e.v === 'boolean') return e.v ? 'True' : 'False';
  if (typeof e.v === 'number') return e.raw ?? String(e.v);
  return JSON.stringify(e.v);
}

/** Placeholder for "the value the statement returns" while a template is filled. */
export const RETURN_TARGET = '__adopt_return__';

/** Writes IR values as source text at the site; the state says what the fast path has run. */
/** A name assigned in a function, the text of the value when it is one name's, and where. */
interface Assignment { target: string; value: string; at: number }

export class Expressions {
  failure?: string;
  range?: [number, number];
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
  /** The bodies of the `if` clauses the guard makes the fast path take. */
  readonly takenClauses: SyntaxNode[] = [];
  private readonly assignsAt = new Map<number, Assignment[]>();
  constructor(protected readonly f: SynthFile, protected readonly s: Site) {}


  /** A node inside a statement moved ahead of the guard. */
  protected inHoisted(node: SyntaxNode): boolean {
    return this.hoisted.some((h) => node.startIndex >= h.startIndex && node.endIndex <= h.endIndex);
  }

  /** How an op inlined from a helper leaves it: -1 when the helper returns its value, i when it
   *  returns it as element i of a tuple (`return q_embed, k_embed`), undefined otherwise or when
   *  the returns disagree. Only ops of a helper called directly from this method. */
  protected returnIndex(op: Op): number | undefined {
    if (op.via?.length !== 1 || op.span.file) return undefined;
    const node = nodeOfSpan(this.f, op.span);
    let fn: SyntaxNode | null = node ?? null;
    while (fn && fn.type !== 'function_definition') fn = fn.parent;
    if (!node || !fn) return undefined;
    const local = this.assignedName(op);
    // `return x if m is None else x + m`: the add the analysis keeps for the conditional
    const optional = op.kw.some(([k]) => k === ABSENT_IF_NONE);
    const returns: SyntaxNode[] = [];
    const walk = (n: SyntaxNode) => {
      if (n.type === 'return_statement') returns.push(n);
      else if (n.type !== 'function_definition' && n.type !== 'lambda') n.namedChildren.forEach(walk);
    };
    fn.childForFieldName('body')?.namedChildren.forEach(walk);
    const same = (x: SyntaxNode) => {
      let y = x;
      while (y.type === 'parenthesized_expression' && y.namedChildren.length === 1) y = y.namedChildren[0];
      if (y.type === 'conditional_expression' && optional && y.namedChildren.some((c) => c.startIndex === node.startIndex && c.endIndex === node.endIndex)) return true;
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
  protected unpackedName(site: Span, i: number): string | undefined {
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
  protected assignedName(op: Op): string | undefined {
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
    // `q.mul_(scale)` on its own line: the result is `q` itself, changed in place
    const fnText = a?.type === 'call' ? a.childForFieldName('function') : null;
    if (stmt?.type === 'expression_statement' && a && node && a.startIndex === node.startIndex && a.endIndex === node.endIndex && /[^_]_$/.test(op.callee) && fnText?.type === 'attribute' && fnText.childForFieldName('object')?.type === 'identifier') return fnText.childForFieldName('object')!.text;
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
        // a statement the fast path runs first may reassign it (`labels = labels[:, 1:]` in the
        // branch): then the name no longer holds this value
        if (this.runFirst.some((r) => writesOf([r]).has(e.path))) return undefined;
        if (/^[A-Za-z_]\w*$/.test(e.path)) return this.liveName(e.path);
        return /^[A-Za-z_][\w.]*$/.test(e.path) ? e.path : undefined;
      case 'const':
        return constText(e);
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
        const def = found?.via && found.site ? { ...found, span: found.site } : found?.called ? { ...found, span: found.called } : found;
        if (!def || (def.span.file ?? this.s.view.file.path) !== this.s.file) return undefined;
        // an op the analysis derived from a larger call (the transpose an einsum canonicalises
        // to) shares that call's span: its text is the call's, not this op's
        const sharesSpan = this.s.view.ops.some((o) => o.id > def.id && o.span.start === def.span.start && o.span.end === def.span.end && (o.span.file ?? '') === (def.span.file ?? ''));
        if (sharesSpan) {
          const [x, a, b] = def.args;
          if (def.callee === 'transpose' && x && a?.k === 'const' && b?.k === 'const') {
            const base = this.expr(x);
            // an operand written as an expression (`q * scale` inside the einsum) is wrapped
            const operand = base === undefined || /^[A-Za-z_][\w.]*$/.test(base) ? base : `(${base})`;
            return operand === undefined ? undefined : `${operand}.transpose(${a.raw ?? a.v}, ${b.raw ?? b.v})`;
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
  protected writtenOut(node: SyntaxNode): string | undefined {
    const at = this.region.findIndex((k) => k.startIndex <= node.startIndex && node.endIndex <= k.endIndex);
    const prior = (at < 0 ? [] : this.region.slice(0, at)).filter((k) => !this.runFirst.some((r) => r.startIndex >= k.startIndex && r.endIndex <= k.endIndex) && !this.skipped.includes(k));
    const written = writesOf(prior);
    const offending = identifierNodes(node).filter((n) => written.has(n.text) && !isAttributeName(n));
    if (!offending.length) return node.text;
    // in a branch the guard would take, reading the dtype of a scaled einsum would move the fast
    // path onto that branch, off the call without it (the default, and what verification runs),
    // which the plan leaving the branch to the original code covers
    const inTaken = this.takenClauses.some((c) => node.startIndex >= c.startIndex && node.endIndex <= c.endIndex);
    const subs = deviceReads(node, prior, true, undefined, !inTaken) ?? new Map<SyntaxNode, string>();
    const covered = (n: SyntaxNode) => [...subs.keys()].some((r) => n.startIndex >= r.startIndex && n.endIndex <= r.endIndex);
    const stale = offending.find((n) => !covered(n));
    if (stale) {
      this.failure ??= `'${stale.text}' read at line ${lineAt(this.f.source, stale.startIndex)} is computed by the original statements, which the fast path does not run`;
      return undefined;
    }
    return substitute(node.text, node.startIndex, subs);
  }

  /**
   * A parameter or local the IR names may have been reassigned before the rewritten code runs
   * (`residual = hidden_states; hidden_states = self.fc(hidden_states)`): then the value lives
   * in the alias, if one still holds it.
   */
  protected liveName(name: string, definedAt = -1): string | undefined {
    const assigns = this.assignsBefore(this.range?.[0] ?? this.opStart());
    if (!assigns) return name;
    const firstReassign = assigns.find((a) => a.target === name && a.at > definedAt);
    if (!firstReassign) return name;
    for (const a of assigns) {
      if (a.value !== name || a.at > firstReassign.at || a.at < definedAt) continue;
      if (!assigns.some((b) => b.target === a.target && b.at > a.at)) return a.target;
    }
    return undefined;
  }

  /** The assignments of the enclosing function before `at` (none outside a function), walked
   *  once per place: every name a template reads asks. */
  private assignsBefore(at: number): Assignment[] | undefined {
    const known = this.assignsAt.get(at);
    if (known) return known;
    const fn = this.enclosingFunction(at);
    if (!fn) return undefined;
    const assigns: Assignment[] = [];
    const walk = (n: SyntaxNode) => {
      if (n.startIndex >= at) return;
      if (n.type === 'function_definition' && n !== fn) return;
      if (n.type === 'if_statement' && n.endIndex > at) {
        // `at` lies in one branch: the others never ran before it (an `if` wholly before `at`
        // may have run either branch, and is walked whole)
        for (const c of n.namedChildren) {
          const branch = c.type === 'block' || c.type === 'elif_clause' || c.type === 'else_clause';
          if (!branch || (c.startIndex <= at && at < c.endIndex)) walk(c);
        }
        return;
      }
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
    this.assignsAt.set(at, assigns);
    return assigns;
  }

  protected opStart(): number {
    const op = Object.values(this.s.ops).find((o): o is Op => !!o);
    const node = op && nodeOfSpan(this.f, op.span);
    return node?.startIndex ?? 0;
  }

  protected enclosingFunction(index: number): SyntaxNode | undefined {
    for (let n: SyntaxNode | null = nodeAt(this.f.root, index, index) ?? null; n; n = n.parent) {
      if (n.type === 'function_definition') return n;
    }
    return undefined;
  }

  protected phiVar(id: number): { v: string; end: number } | { site: Span } | undefined {
    type Found = { v: string; end: number } | { site: Span } | undefined;
    const find = (stmts: Stmt[]): Found => {
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
 *  (their call lies outside the statement, or for a helper of another file, in this file);
 *  undefined for the method's own statement; null when it is inlined but the call cannot be told
 *  (no ops inside, or calls from several places). */
export function inlinedSite(st: IfStmt | ForStmt, own: Span): Span | null | undefined {
  const ops: Op[] = [];
  const walk = (xs: Stmt[]) => { for (const x of xs) { if (x.k === 'op') ops.push(x); else if (x.k === 'if') { walk(x.then); walk(x.else); } else if (x.k === 'for') walk(x.body); } };
  walk(st.k === 'if' ? [...st.then, ...st.else] : st.body);
  // in a helper of another file, every op's call site in this file lies outside the statement
  const outside = ops.filter((o) => o.via?.length && o.site && (st.span.file ? !o.site.file : !(o.site.start >= st.span.start && o.site.end <= st.span.end)));
  const sites = new Set(outside.map((o) => `${o.site!.start}:${o.site!.end}`));
  if (sites.size === 1) return outside[0].site!;
  if (sites.size > 1) return null;
  return st.span.file || st.span.start < own.start || st.span.end > own.end ? null : undefined;
}
