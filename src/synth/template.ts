// The template language: a rule's rewrite is text with placeholders (`{name}`, `{name.part}`,
// `{name|default}`, `{?name:text}`, `{,kw=name}`), filled with source text for one site.
import type { Expr, Op } from '../dsl/ir.js';
import type { Site } from '../match/matcher.js';
import { attrOf } from '../match/method.js';
import { metaLines, type Rule } from '../match/rule.js';
import { sameNode, type SyntaxNode } from '../parse/python.js';
import type { SiteResult } from './edits.js';
import { Expressions } from './expressions.js';
import { ACCESSORS, type AccessorContext } from './accessors.js';
import { grouped, placeholderContexts } from './grouping.js';
import { identifierNodes, nodeAt, nodeOfSpan, statementOf, type SynthFile } from './source.js';

/** Forms a rule matches so that the site is listed, but no kernel takes, in a reader's words
 *  (keyed by the op the template's `{line.absent}` names). */
const UNCOVERED_FORMS: Record<string, string> = {
  tanh: 'the scores are soft-capped (tanh(s / cap) * cap) before the softmax',
};

/** A template transposing a value the code already transposed (`{kt}.transpose(-2, -1)` with
 *  `kt` written `k.transpose(-1, -2)`) gives two swaps of the same dimensions: the value itself. */
function undoubleTranspose(text: string): string {
  return text.replace(/\.transpose\((-2|-1), (-2|-1)\)\.transpose\((-2|-1), (-2|-1)\)/g, (m, a, b, c, d) => (a !== b && c !== d ? '' : m));
}

/** Whether text is a name, attribute, call or subscript chain (`k.transpose(-2, -1)`), which a
 *  method call binds to as a whole: nothing outside brackets but names and dots. */
function bindsTightly(text: string): boolean {
  let depth = 0;
  let quote = '';
  for (const ch of text) {
    if (quote) { if (ch === quote) quote = ''; continue; }
    if (ch === '"' || ch === "'") quote = ch;
    else if ('([{'.includes(ch)) depth++;
    else if (')]}'.includes(ch)) depth--;
    else if (depth === 0 && !/[\w.]/.test(ch)) return false;
  }
  return text.length > 0;
}

/** `{name}`, `{name.part}`, `{name|default}`, `{,name.kw}`: what is left after the optional forms. */
const PLACEHOLDER = /\{(,)?([A-Za-z_]\w*)(?:\.([A-Za-z_]\w*))?(?:\|([^}]*))?\}/g;

/** Fills `{name}`, `{name.module}`, `{name.<kw>}` placeholders with source text. */
export class Render extends Expressions {
  /** Optional ops in a branch the guard excludes: absent on the fast path. */
  readonly notTaken = new Set<string>();
  /** Results named that way: their statement is repeated on the fast path around the name. */
  readonly spilled: { name: string; node: SyntaxNode; stmt: SyntaxNode }[] = [];
  /** Metavariable → the pattern lines that mention it. */
  private readonly metaLines: Map<string, string[]>;
  constructor(f: SynthFile, s: Site, private readonly res: SiteResult, rule?: Rule) {
    super(f, s);
    this.metaLines = rule ? metaLines(rule) : new Map();
  }


  /** An optional line that is absent, or a name the pattern never bound, or a metavariable
   *  bound only by lines in a branch the fast path does not take. */
  private unbound(name: string): boolean {
    if (this.s.ops[name] === null || (this.s.ops[name] === undefined && this.s.bindings[name] === undefined)) return true;
    const lines = this.metaLines.get(name);
    return this.s.ops[name] === undefined && !!lines?.length && lines.every((l) => this.notTaken.has(l));
  }

  fill(tpl: string): string {
    const text = undoubleTranspose(this.fillPlaceholders(tpl));
    // a rule written for methods (`self.training`) says nothing in a module-level function,
    // where the name would raise at run time
    if (/(?<![\w.])self\b/.test(text) && !this.selfInScope()) {
      const fn = this.enclosingFunction(this.range?.[0] ?? this.opStart())?.childForFieldName('name')?.text;
      this.failure ??= `the rewrite reads 'self', which ${fn ? `function ${fn}` : 'the code here'} does not have (not a method)`;
    }
    return text;
  }

  /** Whether `self` is a parameter of the function the rewrite runs in, or of one enclosing it
   *  (a helper defined inside a method reads the method's). */
  selfInScope(): boolean {
    const at = this.range?.[0] ?? this.opStart();
    for (let n: SyntaxNode | null = nodeAt(this.f.root, at, at) ?? null; n; n = n.parent) {
      if (n.type !== 'function_definition') continue;
      const params = n.childForFieldName('parameters')?.namedChildren ?? [];
      if (params.some((p) => (p.type === 'identifier' ? p : p.childForFieldName('name') ?? p.namedChildren.find((c) => c.type === 'identifier'))?.text === 'self')) return true;
    }
    return false;
  }

  /** A line of the fast path: filled, and a value the source transposed by 4-D indexes
   *  (`k.transpose(2, 3)`) and the template transposes back passed as it was, where the
   *  site's guard evaluates that transpose (so the value has at least four dimensions there)
   *  and the kernel's guard admits at most four: then (2, 3) are the last two. */
  fillCode(tpl: string): string {
    const guards = this.res.guards.filter((g) => /_supported\(/.test(g));
    return this.fill(tpl).replace(/(?<![\w)\]])([A-Za-z_][\w.]*)\.transpose\(([23]), ([23])\)\.transpose\((-2|-1), (-2|-1)\)/g, (m, x: string, a: string, b: string, c: string, d: string) =>
      (a !== b && c !== d && guards.some((g) => g.includes(`${x}.transpose(${a}, ${b})`)) ? x : m));
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
      if (text === undefined) { this.failure ??= this.unexpressible(name); return ''; }
      if (other !== undefined && this.value(other) === text) return '';
      this.res.bindings[name] = text;
      return `, ${kw}=${text}`;
    });
    const contexts = placeholderContexts(tpl, PLACEHOLDER, (m, at) => {
      if (m.startsWith('{,') || m.endsWith('.absent}')) return 'none';
      // a part appended to a call, empty when its line is absent (`...){v.reshaped_as|}`)
      return /[)\]]$/.test(tpl.slice(0, at)) ? 'suffix' : 'name';
    });
    let k = 0;
    return tpl.replace(PLACEHOLDER, (m, optKw: string | undefined, name: string, part: string | undefined, dflt: string | undefined, at: number) => {
      const text = this.placeholder(optKw, name, part, dflt);
      const need = contexts[k++];
      if (contexts.length) return grouped(text, need);
      // a template that does not parse with stand-ins: a value written as an expression
      // (`k * scale`) that the template calls a method on is still grouped
      return tpl[at + m.length] === '.' && !bindsTightly(text) ? `(${text})` : text;
    });
  }

  private placeholder(optKw: string | undefined, name: string, part: string | undefined, dflt: string | undefined): string {
    {
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
        const op = this.s.ops[name]!;
        const form = UNCOVERED_FORMS[op.callee];
        // an op inlined from a helper is named where the helper is called
        const at = op.via?.length && op.site ? op.site.from.line : op.span.from.line;
        this.failure ??= form ? `${form} at line ${at}: the kernel does not take it` : `the kernel call does not cover '${op.callee}' at line ${op.span.from.line} yet`;
        return '';
      }
      const text = this.value(name, part);
      if (text === undefined) {
        this.failure ??= this.unexpressible(name, part);
        return '?';
      }
      this.res.bindings[part ? `${name}.${part}` : name] = text;
      return text;
    }
  }

  /** Why a placeholder has no source text. A metavariable's value with no name where the rewrite
   *  runs is one computed inside the statement it replaces (`x = self.norm(x + self.drop(self.ff(x)))`)
   *  or one whose name holds another value by then. */
  private unexpressible(name: string, part?: string): string {
    if (part || this.s.ops[name]) return `cannot express {${name}${part ? `.${part}` : ''}} as source text here`;
    return `cannot write {${name}}, the value the pattern binds to $${name}, where the rewrite runs: it has no name there (it is computed inside a statement the rewrite replaces, or its name holds another value by then)`;
  }

  /** `, kw=<value>` of keyword `part` of matched op `name`, nothing when the call does not pass it. */
  private optionalPart(kw: string, name: string, part: string): string {
    const op = this.s.ops[name];
    if (!op || !op.kw.some(([k]) => k === part)) return '';
    const text = this.value(name, part);
    if (text === undefined) { this.failure ??= this.unexpressible(name, part); return ''; }
    this.res.bindings[`${name}.${part}`] = text;
    return `, ${kw}=${text}`;
  }

  private value(name: string, part?: string): string | undefined {
    const op = this.s.ops[name];
    if (op !== undefined && op !== null) {
      if (!part) return this.assignedName(op) ?? this.spill(name, op);
      const read = ACCESSORS.get(part)?.read;
      if (!read) { this.failure ??= `no template accessor '${part}'`; return undefined; }
      return read(op, this.accessorContext());
    }
    if (op === null) return undefined;
    const meta = this.s.bindings[name];
    const onMeta = part ? ACCESSORS.get(part) : undefined;
    if (meta && onMeta?.read && onMeta.on === 'op or metavariable') {
      // read on the op that computed the metavariable's value
      const def = meta.k === 'ssa' ? this.s.view.defs.get(meta.id) : undefined;
      return def && onMeta.read(def, this.accessorContext());
    }
    return meta ? this.expr(meta) : undefined;
  }

  private accessorContext(): AccessorContext {
    return {
      expr: (e) => this.expr(e),
      isMatchedValue: (a) => this.carriesMatched(a),
      nodeAt: (op) => nodeOfSpan(this.f, op.span),
      constructorOf: (op) => attrOf(this.s.view, op)?.value,
      defOf: (e) => (e.k === 'ssa' ? this.s.view.defs.get(e.id) : undefined),
      phiInputs: (e) => (e.k === 'ssa' ? this.s.view.phis.get(e.id) : undefined),
      ops: () => this.s.view.ops,
      nameOf: (op) => this.assignedName(op),
      selfInScope: () => this.selfInScope(),
      refuse: (why) => { this.failure ??= why; return undefined; },
    };
  }

  /** Whether a value is a matched op's, or a phi one of whose inputs carries one (`if mask is not
   *  None: scores = scores + mask`); a phi merging only settings (`if scaling is None: scaling =
   *  ...`) is a setting. */
  private carriesMatched(e: Expr, seen = new Set<number>()): boolean {
    if (e.k !== 'ssa' || seen.has(e.id)) return false;
    seen.add(e.id);
    if (Object.values(this.s.ops).some((o) => o?.id === e.id)) return true;
    const ins = this.s.view.phis.get(e.id);
    return !!ins && ins.some((x) => this.carriesMatched(x, seen));
  }

  /** `x = (o).transpose(1, 2)`: the result `o` of the pattern is part of the last statement, so
   *  the fast path names it and then runs that statement around the name. */
  private spill(name: string, op: Op): string | undefined {
    const node = nodeOfSpan(this.f, op.span);
    const top = node && this.statements.find((st) => node.startIndex >= st.startIndex && node.endIndex <= st.endIndex);
    if (!node || !top) return undefined;
    // a statement directly in the clause of an `if` chain the fast path takes is run there as it is
    const stmt = statementOf(node);
    if (!stmt || !(sameNode(stmt, top) || this.takenClauses.some((c) => sameNode(c, stmt.parent)))) return undefined;
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
}
