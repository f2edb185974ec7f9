// What the fast path leaves out: names the replaced statements assign that later code reads, and
// the condition under which the rewrite may still run (the name set to None on the fast path).
import type { Span, Stmt } from '../dsl/ir.js';
import type { Site } from '../match/matcher.js';
import { sameNode, type SyntaxNode } from '../parse/python.js';
import type { Edit } from './edits.js';
import { flagCallers } from './flag.js';
import { functionWeightsWanted } from './function-weights.js';
import { alternativesOf, assignedByLines } from './region.js';
import { identifierNodes, readCondition, type SynthFile } from './source.js';

/** Where the file calls a submodule of the site's class (`self.attn(...)` with `self.attn` built
 *  as that class): what reaches its forward. */
export function moduleCallsOf(s: Site): Span[] {
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

/** What the fast path leaves out: names the original statements assign and later code reads.
 *  `askedByCallers`: `cond` is the callers' request through the keywords of a module-level
 *  function (not a name read in this scope). */
export type Escape = { names: string[]; cond: string; askedByCallers?: boolean; edits?: Edit[] } | string | undefined;

/**
 * Names the original statements assign that the fast path does not, but later code reads
 * (`untaken`: clauses that do not run where the fast path runs). When every later read sits under
 * one condition (`(ctx, probs) if output_attentions else (ctx,)`),
 * the rewrite is still possible: it runs only when that condition is false, and the name is set
 * to None on the fast path. Otherwise the reason it is not possible.
 */
export function escapingNames(f: SynthFile, stmts: SyntaxNode[], fast: string[], block: SyntaxNode, after: number, rule: string, moduleCalls: () => Span[] = () => [], untaken: SyntaxNode[] = []): Escape {
  const assigned = new Set<string>();
  const edits: Edit[] = [];
  const collect = (n: SyntaxNode) => {
    // a clause that does not run where the fast path runs assigns nothing there
    if (untaken.some((u) => sameNode(u, n))) return;
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
  const callerConds = new Set<string>();
  // `if not C: name = None` after the statements, in their block: past it, name holds their value
  // only when C does (LLaMA: `if not output_attentions: attn_weights = None`)
  const kills = new Map<string, { cond: string; at: number }>();
  for (const k of block.namedChildren) {
    if (k.startIndex < after || k.type !== 'if_statement' || alternativesOf(k).length > 0) continue;
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
    const cut = rebindAt(block, after, name);
    const reads = identifierNodes(fn ?? f.root).filter((n) => n.text === name && n.startIndex >= after && n.endIndex <= end && n.startIndex < cut && !isWrite(n));
    if (!reads.length) continue;
    const readConds = reads.map((r) => {
      const kill = kills.get(name);
      return kill && r.startIndex >= kill.at ? kill.cond : readCondition(r, fn);
    });
    if (readConds.some((c) => !c)) {
      // returned by a helper whose callers want it only under a flag of theirs: they pass it on
      if (fn && isModuleLevel(fn)) {
        // returned by a module-level function: its callers ask for it through its keywords
        const wanted = functionWeightsWanted(f, fn, reads, name);
        if (typeof wanted === 'string') return `${why} (${wanted})`;
        conds.add(wanted.cond);
        callerConds.add(wanted.cond);
        names.push(name);
        continue;
      }
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
  const askedByCallers = callerConds.has(cond);
  if (!askedByCallers && new RegExp(`(^|[^\\w.])${cond}\\s*(=[^=]|\\+=|-=)`).test(rest)) return `'${cond}' is reassigned after the rewritten statements`;
  return { names, cond, ...(askedByCallers ? { askedByCallers } : {}), ...(edits.length ? { edits } : {}) };
}

/** Where later code rebinds `name` for good: the first statement after the site in its block
 *  that assigns it plainly (`h = self.ffn(x)`, its right side not reading `name`), with no break
 *  or continue before it that could leave the block holding the site's value. A read past it
 *  sees another value. */
function rebindAt(block: SyntaxNode, after: number, name: string): number {
  const jumps = (n: SyntaxNode): boolean => n.type === 'break_statement' || n.type === 'continue_statement' || n.namedChildren.some(jumps);
  for (const k of block.namedChildren) {
    if (k.startIndex < after) continue;
    const a = k.type === 'expression_statement' && k.namedChildren.length === 1 ? k.namedChildren[0] : undefined;
    const left = a?.type === 'assignment' ? a.childForFieldName('left') : null;
    const right = a?.type === 'assignment' ? a.childForFieldName('right') : null;
    if (left?.type === 'identifier' && left.text === name && right && !identifierNodes(right).some((n) => n.text === name)) return k.startIndex;
    if (jumps(k)) return Infinity;
  }
  return Infinity;
}

function isModuleLevel(fn: SyntaxNode): boolean {
  return (fn.parent?.type === 'decorated_definition' ? fn.parent : fn).parent?.type === 'module';
}
