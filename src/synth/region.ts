// Region and hoisting: what the statements between and around the matched ones read and write,
// worked out on the syntax tree, to decide which of them may run first (before the guard, on both
// paths), which read values the fast path derives differently, and what the region assigns.
import type { SyntaxNode } from '../parse/python.js';
import { headSource, type ProductSource } from './head-device.js';
import { parsePython } from '../parse/python.js';
import { sourceFromText } from '../parse/source.js';
import { KERNELS_ALIAS } from './edits.js';
import { readsOnlyKind } from './helper-args.js';
import { identifierNodes, lineEndIndex, lineStartIndex, type SynthFile } from './source.js';

/** `text`, which starts at source index `base`, with each node replaced by its text; from the
 *  end, so the offsets of the ones before stay valid. */
/** The `elif` and `else` clauses of an `if` statement (none for other statements). */
export function alternativesOf(n: SyntaxNode): SyntaxNode[] {
  return n.namedChildren.filter((c) => c.type === 'else_clause' || c.type === 'elif_clause');
}

export function substitute(text: string, base: number, subs?: Map<SyntaxNode, string>): string {
  for (const [node, by] of [...(subs ?? [])].sort((a, b) => b[0].startIndex - a[0].startIndex)) {
    text = text.slice(0, node.startIndex - base) + by + text.slice(node.endIndex - base);
  }
  return text;
}

/** A statement's source lines with its own indentation removed (nested lines keep theirs
 *  relative to it). */
export function dedentedLines(f: SynthFile, n: SyntaxNode, subs?: Map<SyntaxNode, string>): string[] {
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
export function callsModule(text: string): boolean {
  for (const m of text.matchAll(/\bself\.(\w+(?:\.\w+)*)\s*\(/g)) {
    const parts = m[1].split('.');
    if (parts.length === 1 || !PURE_TENSOR_METHODS.has(parts[parts.length - 1])) return true;
  }
  return false;
}

/** The first call written out on a fast path that would run more than once there: each call
 *  in `calls` (an operand written out as it is, `self.keys(x).transpose(-1, -2)`), and each
 *  submodule call without nested parentheses inside it (`self.keys(x)`, which a template that
 *  undoes the transpose writes on its own), counted in `text`. */
export function callRunTwice(calls: Iterable<string>, text: string): string | undefined {
  for (const c of calls) {
    const inner = [...c.matchAll(/\bself\.\w+(?:\.\w+)*\s*\([^()]*\)/g)].map((m) => m[0]).filter((m) => callsModule(m));
    for (const piece of [c, ...inner]) if (text.split(piece).length > 2) return piece;
  }
  return undefined;
}

/** The names source lines assign at their start (`a, b = ...` gives a and b). */
export function assignedByLines(lines: string[]): Set<string> {
  return new Set(lines.flatMap((l) => (/^\s*([A-Za-z_][\w\s,]*)=[^=]/.exec(l)?.[1] ?? '').split(',').map((x) => x.trim()).filter(Boolean)));
}

/** `if C: raise ...` (no else; nested checks allowed) or `assert C`: a check, not computation. */
export function isRaiseOnly(n: SyntaxNode): boolean {
  if (n.type === 'raise_statement' || n.type === 'assert_statement') return true;
  if (n.type !== 'if_statement' || alternativesOf(n).length > 0) return false;
  const body = n.childForFieldName('consequence')?.namedChildren.filter((c) => c.type !== 'comment') ?? [];
  return body.length > 0 && body.every(isRaiseOnly);
}

/** The else branch of `if C: ... else: a = None` as source lines, when it only assigns literals
 *  to names. */
export function literalElse(n: SyntaxNode): string[] | undefined {
  const alts = alternativesOf(n);
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
export const RANDOM = /drop|\brand|bernoulli|noise|\bnormal_?\s*\(|gumbel|multinomial|poisson|uniform_|exponential_/i;

export function commutes(stmt: SyntaxNode, before: SyntaxNode[], replaced = new Set<SyntaxNode>()): boolean {
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
export function isAttributeName(n: SyntaxNode): boolean {
  const p = n.parent;
  return !!p && ((p.type === 'attribute' && p.childForFieldName('attribute')?.startIndex === n.startIndex) || (p.type === 'keyword_argument' && p.childForFieldName('name')?.startIndex === n.startIndex));
}

function moduleOf(n: SyntaxNode): SyntaxNode {
  let x = n;
  while (x.parent) x = x.parent;
  return x;
}

/** `scores.device` / `scores.dtype` in `stmt`, where `before` assigns `scores = matmul(q, ...)`
 *  (or `q @ ...`) from a plain name q: each such attribute node and `q.device` / `q.dtype` to read
 *  instead (a matmul's result has its inputs' device and dtype). Undefined when there are none.
 *  `linears`: submodules known to be Linear layers (`self.lm_head`), whose output `y = self.lm_head(x)`
 *  is on x's device (only the device: autocast may change the dtype). `einsums`: also a two-operand
 *  einsum that is one product, and a product scaled in its own statement (`einsum(...) * scale`). */
export function deviceReads(stmt: SyntaxNode, before: SyntaxNode[], onFastPath = true, linears: ReadonlySet<string> = new Set(), einsums = false): Map<SyntaxNode, string> | undefined {
  // the last assignment to each name in `before`: a matmul of two plain names, or nothing usable
  const sources = new Map<string, ProductSource | null>();
  for (const b of before) {
    // `x = x / 8.0`, `if scale: x = x / torch.full([], d ** 0.5, ...)`: dtype and device stay x's
    if (keepsTensorKind(b, sources)) continue;
    const previous = new Map(sources);
    for (const name of writesOf([b])) sources.set(name, null);
    const a = b.type === 'expression_statement' ? b.namedChildren[0] : undefined;
    if (a?.type !== 'assignment' || a.childForFieldName('left')?.type !== 'identifier') continue;
    let right = a.childForFieldName('right');
    while (right?.type === 'parenthesized_expression' && right.namedChildren.length === 1) right = right.namedChildren[0];
    let operands: (SyntaxNode | string | null | undefined)[] = [];
    let bmm = false;
    // `einsum(...) * scale` in one statement: a number keeps the product's dtype, a name may
    // promote it (a float64 tensor), which the read then asks at run time
    const scaled = einsums ? scaledProduct(right) : undefined;
    const times = scaled?.times;
    if (scaled) right = scaled.product;
    const product = productOf(right, einsums);
    if (product) ({ operands, bmm } = product);
    else if (right?.type === 'call' && /(^|\.)baddbmm$/.test(right.childForFieldName('function')?.text ?? '')) {
      // `alibi.baddbmm(batch1=q, batch2=k, ...)`: the product's dtype and device (baddbmm takes
      // one dtype for all three)
      const args = right.childForFieldName('arguments')?.namedChildren ?? [];
      const kw = (n: string) => args.find((x) => x.type === 'keyword_argument' && x.childForFieldName('name')?.text === n)?.childForFieldName('value');
      const pos = args.filter((x) => x.type !== 'keyword_argument');
      const at = right.childForFieldName('function')!.text === 'torch.baddbmm' ? 1 : 0;
      operands = [kw('batch1') ?? pos[at], kw('batch2') ?? pos[at + 1]];
      bmm = true;
    } else if (linears.size && headSource(right, linears, previous)) {
      sources.set(a.childForFieldName('left')!.text, headSource(right, linears, previous)!);
      continue;
    } else if (right?.type === 'call') {
      // a view or reshape of a product has the product's dtype and device
      const fn = right.childForFieldName('function');
      const obj = fn?.type === 'attribute' ? fn.childForFieldName('object') : null;
      const known = obj?.type === 'identifier' ? previous.get(obj.text) : undefined;
      if (known && /^(view|reshape|contiguous)$/.test(fn!.childForFieldName('attribute')?.text ?? '')) sources.set(a.childForFieldName('left')!.text, known);
    }
    const textOf = (x: SyntaxNode | string | null | undefined) => (typeof x === 'string' ? x : x?.text);
    const plain = (x: string | undefined) => !!x && /^[A-Za-z_]\w*(\.transpose\(\s*-?\d+\s*,\s*-?\d+\s*\))?$/.test(x);
    const [ta, tb] = operands.map(textOf);
    if (operands.length === 2 && plain(ta) && plain(tb)) sources.set(a.childForFieldName('left')!.text, { a: ta!, b: tb!, bmm, ...(times ? { times } : {}) });
  }
  const beforeWrites = writesOf(before);
  const out = new Map<SyntaxNode, string>();
  for (const n of identifierNodes(stmt)) {
    const src = sources.get(n.text);
    const p = n.parent;
    if (!src || [src.a, src.b, ...(src.times ? [src.times] : [])].some((x) => beforeWrites.has(x.split(/[.[]/)[0]))) continue;
    // `m.expand_as(scores)`: expanded to the product's shape, computed from the operands' shapes
    const call = p?.type === 'argument_list' && p.namedChildren.length === 1 ? p.parent : null;
    const fn = call?.type === 'call' ? call.childForFieldName('function') : null;
    if (fn?.type === 'attribute' && fn.childForFieldName('attribute')?.text === 'expand_as' && !src.bmm) {
      const target = fn.childForFieldName('object')!;
      if (identifierNodes(target).some((x) => beforeWrites.has(x.text))) continue;
      out.set(call!, `${target.text}.expand(torch.broadcast_shapes(${src.a}.shape[:-2], ${src.b}.shape[:-2]) + (${src.a}.shape[-2], ${src.b}.shape[-1]))`);
      continue;
    }
    // the device is the operands'; the dtype is what their product gives under the same autocast
    // state, which adopt_kernels reads without launching a product (a statement that runs on
    // both paths asks a one-element product where the package is missing)
    const product = `torch.${src.bmm ? 'bmm' : 'matmul'}(${src.a}[..., :1, :], ${src.b}[..., :, :1]).dtype`;
    const read = `${KERNELS_ALIAS}.product_dtype(${src.a}, ${src.b})`;
    const unscaled = onFastPath ? read : `(${read} if ${KERNELS_ALIAS} is not None else ${product})`;
    // what `product * times` gives: the promotion of a tensor with dimensions by the factor
    const dtype = src.times ? `torch.result_type(torch.empty(0, dtype=${unscaled}), ${src.times})` : unscaled;
    // the scores passed to a helper of the file that reads only their dtype and device: an empty
    // tensor of that dtype and device in their place
    if (p?.type === 'argument_list' && !src.deviceOnly && readsOnlyKind(moduleOf(n), n)) { out.set(n, `torch.empty((), dtype=${dtype}, device=${src.a}.device)`); continue; }
    const obj = p?.type === 'attribute' ? p.childForFieldName('object') : null;
    const attr = obj && obj.startIndex === n.startIndex && obj.endIndex === n.endIndex ? p!.childForFieldName('attribute')?.text : undefined;
    if (attr !== 'device' && (attr !== 'dtype' || src.deviceOnly)) continue;
    out.set(p!, attr === 'device' ? `${src.a}.device` : dtype);
  }
  return out.size ? out : undefined;
}

/** The operands of a product written as `a @ b`, `torch.matmul(a, b)`, `torch.bmm(a, b)`, or a
 *  two-operand einsum that is one (`"bhqd,bhkd->bhqk"`: `a @ b.transpose(-2, -1)`). */
function productOf(n: SyntaxNode | null | undefined, einsums = true): { operands: (SyntaxNode | string)[]; bmm: boolean } | undefined {
  if (n?.type === 'binary_operator' && n.childForFieldName('operator')?.text === '@') {
    const [l, r] = [n.childForFieldName('left'), n.childForFieldName('right')];
    return l && r ? { operands: [l, r], bmm: false } : undefined;
  }
  const fn = n?.type === 'call' ? n.childForFieldName('function')?.text ?? '' : '';
  const args = n?.childForFieldName('arguments')?.namedChildren ?? [];
  if (/(^|\.)(matmul|bmm)$/.test(fn)) return { operands: args, bmm: /bmm$/.test(fn) };
  if (!einsums || !/^torch\.einsum$/.test(fn) || args.length !== 3 || args[0].type !== 'string') return undefined;
  const eq = /^["']([^"'{}\\]*)["']$/.exec(args[0].text)?.[1].replace(/\s+/g, '');
  // a shared batch prefix, then (i, j) and (j, k) or (k, j) into (i, k), every letter distinct
  const m = eq && /^((?:\.\.\.)?[A-Za-z]*)([A-Za-z])([A-Za-z]),\1([A-Za-z])([A-Za-z])->\1([A-Za-z])([A-Za-z])$/.exec(eq);
  if (!m) return undefined;
  const [, batch, i, j, x, y, oi, ok] = m;
  const letters = [...batch.replace('...', ''), i, j];
  if (new Set(letters).size !== letters.length || oi !== i) return undefined;
  const [b0, b1] = [args[1].text, args[2].text];
  if (x === j && !letters.includes(y) && ok === y) return { operands: [b0, b1], bmm: false };
  if (y === j && !letters.includes(x) && ok === x) return { operands: [b0, `${b1}.transpose(-2, -1)`], bmm: false };
  return undefined;
}

/** `P * s`, `s * P` or `P / s` for a product P and a Python number or 0-d tensor s (the dtype
 *  stays the product's), or `P * name` (then `times` is the name, which may promote it). */
function scaledProduct(n: SyntaxNode | null | undefined): { product: SyntaxNode; times?: string } | undefined {
  if (n?.type !== 'binary_operator') return undefined;
  const op = n.childForFieldName('operator')?.text;
  const unwrap = (x: SyntaxNode | null) => { while (x?.type === 'parenthesized_expression' && x.namedChildren.length === 1) x = x.namedChildren[0]; return x; };
  const [l, r] = [unwrap(n.childForFieldName('left')), unwrap(n.childForFieldName('right'))];
  if (!l || !r || (op !== '*' && op !== '/')) return undefined;
  const keeps = (x: SyntaxNode) => pythonNumber(x) || zeroDimTensor(x);
  const name = (x: SyntaxNode) => /^[A-Za-z_][\w.]*$/.test(x.text) && !/\.\./.test(x.text);
  for (const [p, f] of op === '*' ? [[l, r], [r, l]] : [[l, r]]) {
    if (!productOf(p)) continue;
    if (keeps(f)) return { product: p };
    if (op === '*' && name(f)) return { product: p, times: f.text };
  }
  return undefined;
}

/** A statement that only scales names it assigns by a Python number or a 0-d tensor
 *  (`x = x / math.sqrt(d)`, `x = x * torch.full([], s, dtype=x.dtype)`), possibly under an
 *  `if` without else: what it assigns keeps its dtype and device, whichever path runs. */
export function keepsTensorKind(b: SyntaxNode, sources: Map<string, unknown>): boolean {
  if (b.type === 'if_statement') {
    if (alternativesOf(b).length > 0) return false;
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
export function pythonNumber(e: SyntaxNode): boolean {
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
export function numberInZeroDim(text: string): string {
  // no `torch.full`, nothing to parse
  if (!text.includes('full')) return text;
  const e = parsePython(sourceFromText('<factor>', `(${text})`)).root.namedChildren[0]?.namedChildren[0]?.namedChildren[0];
  if (!e || !zeroDimTensor(e)) return text;
  const value = e.childForFieldName('arguments')!.namedChildren[1];
  return value && value.type !== 'keyword_argument' && pythonNumber(value) ? value.text : text;
}

export function zeroDimTensor(e: SyntaxNode): boolean {
  if (e.type !== 'call' || !/^torch\.full$/.test(e.childForFieldName('function')?.text ?? '')) return false;
  const first = e.childForFieldName('arguments')?.namedChildren[0];
  return !!first && /^(\[\s*\]|\(\s*\))$/.test(first.text);
}

/** Assignments, and `if`s holding only assignments, checks that raise, and `pass`. */
export function plainAssignments(n: SyntaxNode): boolean {
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
export function writesOf(stmts: SyntaxNode[]): Set<string> {
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
export function assignedIn(stmts: SyntaxNode[]): Set<string> {
  const out = new Set<string>();
  const stack = [...stmts];
  while (stack.length) {
    const x = stack.pop()!;
    if (['assignment', 'augmented_assignment', 'for_statement'].includes(x.type)) for (const id of identifierNodes(x.childForFieldName('left') ?? x)) out.add(id.text);
    stack.push(...x.namedChildren);
  }
  return out;
}

export function commonBlock(stmts: SyntaxNode[]): SyntaxNode | undefined {
  const chain = (n: SyntaxNode) => { const out: SyntaxNode[] = []; for (let p: SyntaxNode | null = n.parent; p; p = p.parent) if (p.type === 'block' || p.type === 'module') out.push(p); return out; };
  const chains = stmts.map(chain);
  for (const b of chains[0]) {
    if (chains.every((c) => c.some((x) => x.startIndex === b.startIndex && x.endIndex === b.endIndex && x.type === b.type))) {
      return b.type === 'block' ? b : undefined;
    }
  }
  return undefined;
}

export function ancestorIn(n: SyntaxNode, block: SyntaxNode): SyntaxNode | undefined {
  for (let x: SyntaxNode | null = n; x; x = x.parent) {
    if (x.parent && x.parent.startIndex === block.startIndex && x.parent.endIndex === block.endIndex && x.parent.type === block.type) return x;
  }
  return undefined;
}

export function hasMultilineString(nodes: SyntaxNode[]): boolean {
  const stack = [...nodes];
  while (stack.length) {
    const n = stack.pop()!;
    if (n.type === 'string' && n.text.includes('\n')) return true;
    stack.push(...n.namedChildren);
  }
  return false;
}
