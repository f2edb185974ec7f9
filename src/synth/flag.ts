// A helper method that returns its attention probabilities unconditionally (GPT-2's `_attn`
// ends `return attn_output, attn_weights`) while its callers read them only when a flag of theirs
// holds (`if output_attentions:`). The helper gains a keyword parameter, True by default, that
// those callers set to their flag, so its fast path knows when the probabilities are not wanted.
// Calls that do not pass it (other callers, code outside the file) keep the original behaviour.
// Code the rewrite cannot see may put another callee in the helper's place (a subclass of another
// file overriding `_attn`, a module swapped in for `self.attn`, a patch of the class's method),
// which does not take the keyword: the rewrite marks the helper it changed
// (`_attn._adopt_takes_need_attn_weights = True`) and a caller passes the keyword only to a callee
// that carries the mark, calling any other as the original did.
import type { SyntaxNode } from '../parse/python.js';
import type { Span } from '../dsl/ir.js';
import { identifierNodes, lineAt, nodeOfSpan, readCondition, type SynthFile } from './source.js';

export interface InsertEdit { start: number; end: number; text: string; rule: string; line: number }

export interface Flagged { param: string; edits: InsertEdit[] }

const RETURN_LIST = new Set(['expression_list', 'tuple']);

/** `name`, read only in the `return ..., name` ending method `fn`: the parameter that says whether
 *  a caller wants it, with the edits declaring it and passing it from each caller that reads the
 *  element only under one plain-name condition; or why that cannot be done. */
export function flagCallers(f: SynthFile, fn: SyntaxNode, reads: SyntaxNode[], name: string, rule: string, moduleCalls: () => Span[] = () => []): Flagged | string {
  const ret = reads[0]?.parent?.parent;
  const list = reads[0]?.parent;
  if (!ret || ret.type !== 'return_statement' || !list || !RETURN_LIST.has(list.type)) return `'${name}' is returned in an expression`;
  if (reads.some((r) => r.parent !== list) || ret.parent?.parent !== fn) return `'${name}' is read elsewhere than in the method's final return`;
  const items = list.namedChildren.filter((c) => c.type !== 'comment');
  const index = items.findIndex((c) => c.startIndex === reads[0].startIndex);
  const cls = fn.parent?.type === 'block' ? fn.parent.parent : null;
  if (!cls || cls.type !== 'class_definition') return `'${name}' is returned by a function, not a method its class calls`;
  const method = fn.childForFieldName('name')!.text;

  const clsName = cls.childForFieldName('name')!.text;
  const param = `_adopt_need_${name}`;
  const params = fn.childForFieldName('parameters')!;
  if (params.namedChildren.some((p) => p.type === 'dictionary_splat_pattern' || p.text.startsWith(param))) return `${method} takes **kwargs or already has ${param}`;
  // the class and its subclasses in the file: only their calls reach this method (another class
  // may have a method of the same name that takes no flag)
  const family = new Set([clsName]);
  const classes: SyntaxNode[] = [];
  const collect = (n: SyntaxNode) => { if (n.type === 'class_definition') classes.push(n); n.namedChildren.forEach(collect); };
  collect(f.root);
  for (let grew = true; grew;) {
    grew = false;
    for (const c of classes) {
      const own = c.childForFieldName('name')!.text;
      if (!family.has(own) && superNames(c).some((b) => family.has(b))) { family.add(own); grew = true; }
    }
  }
  const members = classes.filter((c) => family.has(c.childForFieldName('name')!.text));
  if (members.some((c) => c !== cls && definesMethod(c, method))) return `a subclass of ${clsName} overrides ${method}`;
  const calls: SyntaxNode[] = [];
  if (method === 'forward') {
    // forward is reached through the submodules built as this class (`self.attn(...)`), whose
    // calls pass keywords on to it
    for (const sp of moduleCalls()) {
      const call = nodeOfSpan(f, sp);
      if (call?.type === 'call') calls.push(call);
    }
  } else {
    const visit = (n: SyntaxNode) => {
      if (n.type === 'class_definition' && !members.includes(n)) return;
      if (n.type === 'call' && n.childForFieldName('function')?.text === `self.${method}`) calls.push(n);
      n.namedChildren.forEach(visit);
    };
    members.forEach(visit);
  }
  const marker = `_adopt_takes${param.slice('_adopt'.length)}`;
  const edits: InsertEdit[] = [];
  for (const call of calls) {
    const cond = callerCondition(f, call, index, items.length);
    if (cond === undefined) continue;
    const args = call.childForFieldName('arguments');
    if (!args || args.type !== 'argument_list' || args.text.includes(param)) continue;
    // what the call runs: `self._attn`, or the module's `forward` (`self.attn.forward`), read
    // again by the check, so it must be a plain reference
    const callee = method === 'forward' ? `${call.childForFieldName('function')?.text}.forward` : `self.${method}`;
    if (!PLAIN_REFERENCE.test(callee)) continue;
    edits.push(insertArgument(f, args, `**({'${param}': ${cond}} if getattr(${callee}, '${marker}', False) else {})`, rule));
  }
  if (!edits.length) return method === 'forward' ? `no call of a ${clsName} module in the file reads '${name}' only under a condition it could pass on` : `no call of self.${method} reads '${name}' only under a condition it could pass on`;
  edits.push(insertArgument(f, params, `${param}=True`, rule));
  edits.push(markAfter(f, fn, `${method}.${marker} = True  # adopt: callers pass ${param} to this ${method} alone, not to an override or a module swapped in`, rule));
  return { param, edits };
}

const PLAIN_REFERENCE = /^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*|\[[\w.]+\])*$/;

/** A statement of the class body right after method `fn` (past the end of its last line). */
function markAfter(f: SynthFile, fn: SyntaxNode, text: string, rule: string): InsertEdit {
  const src = f.source.text;
  const lineStart = src.lastIndexOf('\n', fn.startIndex - 1) + 1;
  const indent = /^[ \t]*/.exec(src.slice(lineStart, fn.startIndex))![0];
  let at = src.indexOf('\n', fn.endIndex);
  if (at < 0) at = src.length;
  else if (src[at - 1] === '\r') at -= 1;
  const nl = f.newline;
  return { start: at, end: at, text: `${nl}${nl}${indent}${text}`, rule, line: lineAt(f.source, at) };
}

function superNames(c: SyntaxNode): string[] {
  return c.childForFieldName('superclasses')?.namedChildren.map((b) => b.text.split('.').pop()!) ?? [];
}

function definesMethod(c: SyntaxNode, method: string): boolean {
  return (c.childForFieldName('body')?.namedChildren ?? []).some((m) => (m.type === 'function_definition' ? m : m.type === 'decorated_definition' ? m.childForFieldName('definition') : null)?.childForFieldName('name')?.text === method);
}

/** For `a, b = self.m(...)`: the plain-name condition every later read of element `index` sits
 *  under (`False` when nothing reads it), or undefined when there is none to pass on. */
function callerCondition(f: SynthFile, call: SyntaxNode, index: number, count: number): string | undefined {
  const assign = call.parent;
  if (assign?.type !== 'assignment' || assign.childForFieldName('right')?.startIndex !== call.startIndex) return undefined;
  const left = assign.childForFieldName('left');
  const targets = left && ['pattern_list', 'tuple_pattern'].includes(left.type) ? left.namedChildren : [];
  if (targets.length !== count || targets[index]?.type !== 'identifier') return undefined;
  const target = targets[index].text;
  let fn: SyntaxNode | null = call.parent;
  for (; fn && fn.type !== 'function_definition'; fn = fn.parent) if (fn.type === 'for_statement' || fn.type === 'while_statement') return undefined;
  if (!fn) return undefined;
  const after = assign.endIndex;
  const isWrite = (n: SyntaxNode) => n.parent?.type === 'assignment' && n.parent.childForFieldName('left')?.startIndex === n.startIndex;
  const reads = identifierNodes(fn).filter((n) => n.text === target && n.startIndex >= after && !isWrite(n) && !inPattern(n));
  const conds = new Set(reads.map((r) => readCondition(r, fn)));
  if (!reads.length) return 'False';
  if (conds.size !== 1 || conds.has(undefined)) return undefined;
  const [cond] = [...conds] as string[];
  // the condition must mean the same at the call and at the read
  const rest = f.source.text.slice(after, fn.endIndex);
  if (new RegExp(`(^|[^\\w.])${cond}\\s*(=[^=]|\\+=|-=)`).test(rest)) return undefined;
  // and so must the name: a later assignment before a read would make the read another value's
  if (new RegExp(`(^|[^\\w.])${target}\\s*(,[\\w\\s,]*)?=[^=]`).test(rest)) return undefined;
  return cond;
}

function inPattern(n: SyntaxNode): boolean {
  const p = n.parent;
  return !!p && (p.type === 'pattern_list' || p.type === 'tuple_pattern') && p.parent?.type === 'assignment' && p.parent.childForFieldName('left')?.startIndex === p.startIndex;
}

/** `f(a, b)` -> `f(a, b, text)`, also after a trailing comma or in an empty list; one argument
 *  a line stays one a line. */
function insertArgument(f: SynthFile, list: SyntaxNode, text: string, rule: string): InsertEdit {
  const close = list.endIndex - 1;
  const inner = f.source.text.slice(list.startIndex + 1, close);
  const lines = inner.split('\n');
  if (lines.length > 2 && inner.trimEnd().endsWith(',') && lines[lines.length - 1].trim() === '') {
    // the closing parenthesis on a line of its own: a new line like the last argument's
    const lastArg = [...lines].reverse().find((l) => l.trim() !== '')!;
    const indent = /^\s*/.exec(lastArg)![0];
    const at = close - lines[lines.length - 1].length;
    const nl = f.newline;
    return { start: at, end: at, text: `${indent}${text},${nl}`, rule, line: lineAt(f.source, at) };
  }
  const sep = inner.trim() === '' ? '' : inner.trimEnd().endsWith(',') ? ' ' : ', ';
  const at = inner.trim() === '' || inner.trimEnd().endsWith(',') ? close : list.startIndex + 1 + inner.trimEnd().length;
  const line = lineAt(f.source, at);
  return { start: at, end: at, text: `${sep}${text}`, rule, line };
}
