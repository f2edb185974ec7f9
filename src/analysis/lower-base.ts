// The lowering's state and its emission: SSA ids, the op list being filled, spans and
// diagnostics. The statement and expression stages build on it (lower-expr, lower-call, lower).
import type { Diagnostic } from '../diag.js';
import type { Expr, OpKind, Op, Span, Stmt } from '../dsl/ir.js';
import type { SyntaxNode } from '../parse/python.js';
import { posAt } from '../parse/source.js';
import { spanOf, type ClassTable } from './classes.js';
import { LIMITS, type Flow, type Frame, type Val } from './lower-support.js';
import type { Resolver } from './resolve.js';

export abstract class LowererBase {
  protected nextId = 1;
  protected out: Stmt[] = [];
  /** Every op emitted, by id: what an in-place write through a view finds its base from. */
  protected opsById = new Map<number, Op>();
  protected frame!: Frame;
  protected via: string[] = [];
  /** `via` as last copied into an op: every op of one inlined call shares one list, copied again
   *  only after the inlining stack has changed. */
  private viaCopy: string[] | null = null;
  /** The call in the method being lowered that the current inlining started at. */
  protected callSite?: Span;
  protected stack: string[] = [];
  protected opCount = 0;
  protected exprDepth = 0;
  protected blockDepth = 0;
  protected limitHit = false;

  constructor(
    protected readonly resolver: Resolver,
    protected readonly classes: ClassTable,
    protected readonly ownerPath: string,
    protected readonly diagnostics: Diagnostic[],
  ) {}

  protected abstract expr(node: SyntaxNode): Val;
  protected abstract block(node: SyntaxNode | null): Flow;

  protected id(): number {
    return this.nextId++;
  }

  protected emit(kind: OpKind, callee: string, args: Expr[], kw: [string, Expr][], node: SyntaxNode, types?: string[], span?: Span): Val {
    const id = this.id();
    const op: Op = { k: 'op', id, kind, callee, args, kw, span: span ?? this.span(node) };
    if (types?.length) op.type = types;
    else if (kind === 'module') op.type = ['?'];
    if (this.via.length) { op.via = this.viaList(); if (this.callSite) op.site = this.callSite; }
    if (++this.opCount === LIMITS.opsPerMethod) this.limit(node, `more than ${LIMITS.opsPerMethod} ops in one method: the rest is not analysed`);
    if (this.opCount <= LIMITS.opsPerMethod) { this.out.push(op); this.opsById.set(id, op); }
    return { e: { k: 'ssa', id } };
  }

  private viaList(): string[] {
    const v = this.viaCopy;
    if (v && v.length === this.via.length && v.every((q, i) => q === this.via[i])) return v;
    return (this.viaCopy = [...this.via]);
  }

  protected span(node: SyntaxNode): Span {
    return spanOf(this.frame.syms.parsed.source, node, this.ownerPath);
  }

  protected note(node: SyntaxNode, text: string): void {
    this.out.push({ k: 'note', text, span: this.span(node) });
  }

  protected warn(node: SyntaxNode, code: string, message: string): void {
    const src = this.frame.syms.parsed.source;
    const p = posAt(src, node.startIndex);
    if (!this.diagnostics.some((d) => d.code === code && d.line === p.line && d.file === src.path)) {
      this.diagnostics.push({ severity: 'warning', code, file: src.path, line: p.line, col: p.col, message });
    }
  }

  protected limit(node: SyntaxNode, message: string): void {
    if (message.startsWith('more than')) this.limitHit = true;
    this.warn(node, 'limit', message);
  }
}
