// Template accessors: what `{name.part}` in a rule's rewrite reads off the matched code. One
// registry, name → description → implementation, read by the template renderer and by the rule
// loader (which rejects a template naming an accessor that is not here) and listed for rule
// writers by `accessorTable`.
import type { Expr, Op } from '../dsl/ir.js';
import { ABSENT_IF_NONE } from '../analysis/optional-add.js';
import { readLmLoss } from './lm-head-loss.js';
import { numberInZeroDim } from './region.js';
import { reshapedAs, viewCheck } from './reshape-accessors.js';

export type { AccessorContext } from './accessor-context.js';
import type { AccessorContext } from './accessor-context.js';

export interface Accessor {
  name: string;
  description: string;
  /** What it is read on: a pattern line's op only, or a metavariable as well (then it reads the
   *  op that computed the metavariable's value). */
  on: 'op' | 'op or metavariable';
  /** Undefined for `absent`, which the template language itself handles. */
  read?: (op: Op, cx: AccessorContext) => string | undefined;
}

const keywordOf = (call: { kw: [string, Expr][] }, name: string): Expr | undefined => call.kw.find(([k]) => k === name)?.[1];

/** The multiplicative factor a scaling op applies (a division's as 1.0 / divisor). */
function factor(op: Op, cx: AccessorContext): string | undefined {
  // `div(s, d, rounding_mode="floor")` rounds the quotient: no factor scales to it
  const rounding = op.kw.find(([k]) => k === 'rounding_mode')?.[1];
  if (rounding && !(rounding.k === 'const' && rounding.v === null)) return cx.refuse(`${op.callee} at line ${op.span.from.line} rounds (rounding_mode=${rounding.k === 'const' ? JSON.stringify(rounding.v) : '...'}): it is no scaling by a factor`);
  const other = op.args.find((a) => !cx.isMatchedValue(a));
  const written = other && cx.expr(other);
  const t = written === undefined ? undefined : numberInZeroDim(written);
  // in place or not, a division applies the reciprocal
  return t === undefined ? undefined : op.callee === 'div' || op.callee === 'div_' ? `1.0 / (${t})` : t;
}

/** The rank an index of full slices assumes (`x[:, :, :, ::2]`: `x.dim() == 4`); `True` for an
 *  index with `...`, which holds for any rank. */
function rankCheck(op: Op, cx: AccessorContext): string | undefined {
  const idx = op.callee === 'getitem' ? op.args[1] : undefined;
  // a result of unbind(-1) has the rank of what was unbound less one, whatever it is
  if (idx?.k === 'const' && cx.defOf(op.args[0])?.callee === 'unbind') return 'True';
  if (idx?.k !== 'tuple') return undefined;
  if (idx.items.some((e) => e.k === 'name' && e.path === '...')) return 'True';
  const x = cx.expr(op.args[0]);
  return x === undefined ? undefined : `${x}.dim() == ${idx.items.length}`;
}

/** A Python condition that merging the stacked rotated pairs (`stack((-o, e), -1)`) back into the
 *  last dimension is `flatten(-2)`: `True` for `flatten(-2)` and for a reshape to the tensor's own
 *  shape, `x.dim() == k + 1` for `flatten(k)`. */
function mergeCheck(op: Op, cx: AccessorContext): string | undefined {
  if (op.callee === 'reshape' || op.callee === 'view') return 'True';
  const start = op.kw.find(([k]) => k === 'start_dim')?.[1] ?? op.args[1];
  if (op.callee !== 'flatten' || start?.k !== 'const' || typeof start.v !== 'number') return undefined;
  if (start.v === -2) return 'True';
  const stack = cx.defOf(op.args[0]);
  const pair = stack?.callee === 'stack' ? stack.args[0] : undefined;
  const evens = pair?.k === 'tuple' || pair?.k === 'list' ? cx.defOf(pair.items[1]) : undefined;
  if (evens?.callee !== 'getitem') return undefined;
  const unbind = cx.defOf(evens.args[0]);
  const base = unbind?.callee === 'unbind' ? cx.defOf(unbind.args[0])?.args[0] : evens.args[0];
  const x = base && cx.expr(base);
  return x === undefined ? undefined : `${x}.dim() == ${start.v + 1}`;
}

/** A Python condition that a reduction's dim is the last dimension: `True` for `dim=-1`, a run-time
 *  check of a dim held in an attribute or argument (`self.dim == -1`); undefined for any other
 *  constant, several dims, or no dim, which the kernels do not cover. */
function lastDimCheck(op: Op, cx: AccessorContext): string | undefined {
  const written = keywordOf(op, 'dim');
  // one dim in a tuple (`dim=(-1,)`) is that dim; several can never be the last dimension alone, so
  // the guard `(-2, -1) == -1` would be always false: refused, as the constraint does
  const dims = written?.k === 'tuple' || written?.k === 'list' ? written.items : written ? [written] : [];
  if (dims.length > 1) return cx.refuse(`${op.callee} at line ${op.span.from.line} is over ${dims.length} dims: a reduction over more than the last dimension`);
  const dim = dims.length === 1 ? dims[0] : undefined;
  if (!dim || dim.k === 'const' || dim.k === 'star') return dim?.k === 'const' && dim.v === -1 ? 'True' : undefined;
  const text = cx.isMatchedValue(dim) ? undefined : cx.expr(dim);
  return text === undefined ? undefined : `${text} == -1`;
}

/** The function a call goes through, as written, when it is not inlined from a helper. */
function calledAs(op: Op, cx: AccessorContext): string | undefined {
  const call = op.via?.length ? undefined : cx.nodeAt(op);
  return call?.type === 'call' ? call.childForFieldName('function')?.text : undefined;
}

/** The submodule a module op calls, as source text: its name (`self.fc`), or a lookup whose index
 *  forward computes (`self.bns[len(self.bns) - 1 - i]`, which the analysis names `self.bns[%5]`)
 *  with the index written where the rewrite runs; undefined (the site refused, with the reason)
 *  when the index cannot be written there. Never the analysis's own names for values. */
export function moduleRef(op: Op, cx: AccessorContext): string | undefined {
  if (!/%\d/.test(op.callee)) return op.callee;
  let missing: string | undefined;
  const text = op.callee.replace(/\[%(\d+)\]/g, (m, id: string) => {
    const index = cx.expr({ k: 'ssa', id: Number(id) });
    if (index === undefined) missing ??= m;
    return `[${index}]`;
  });
  const call = op.via?.length ? undefined : cx.nodeAt(op);
  const written = call?.type === 'call' ? call.childForFieldName('function')?.text : undefined;
  if (missing !== undefined || /%\d/.test(text)) return cx.refuse(`the submodule ${written ?? op.callee} is looked up with an index that cannot be written where the rewrite runs`);
  return text;
}

/** What a module-like op is: the submodule, a table lookup, the GELU function called, or a
 *  dropout's probability. */
function moduleOf(op: Op, cx: AccessorContext): string | undefined {
  if (op.kind === 'module' && !op.callee.startsWith('%')) return moduleRef(op, cx);
  if (op.kind === 'module') {
    // a lookup in forward (`ACT2FN[self.config.hidden_act](x)`): the lookup, written again
    const fn = calledAs(op, cx);
    return fn && /^[A-Za-z_][\w.]*\[[A-Za-z_][\w.]*\]$/.test(fn) ? fn : undefined;
  }
  // functional GELU: the function called, so the guard judges what runs (an attribute holding
  // F.gelu may be swapped); with `approximate=` given, its name as transformers' hidden_act
  // strings say it
  if (op.kind === 'op' && op.callee === 'gelu') {
    const approx = keywordOf(op, 'approximate') ?? op.args[1];
    if (approx?.k === 'const') return approx.v === 'tanh' ? '"gelu_pytorch_tanh"' : approx.v === 'none' ? '"gelu"' : undefined;
    // `approximate=self.config.gelu_approximate`: named at run time; a value F.gelu rejects
    // names nothing, gelu_kind gives None and the guard runs the original call
    if (approx) return `{"none": "gelu", "tanh": "gelu_pytorch_tanh"}.get(${cx.expr(approx)})`;
    const fn = calledAs(op, cx);
    return fn && /^[A-Za-z_][\w.]*$/.test(fn) ? fn : '"gelu"';
  }
  // a GELU function object called by its name (RoBERTa's `gelu` from transformers.activations,
  // a module instance): the guard judges what the name holds at run time
  if (op.kind === 'call') {
    const fn = calledAs(op, cx);
    return fn && /^[A-Za-z_][\w.]*$/.test(fn) ? fn : undefined;
  }
  // functional dropout: the kernel takes the probability
  const p = keywordOf(op, 'p') ?? op.args[1];
  return p ? cx.expr(p) : op.callee === 'dropout' ? '0.5' : undefined;
}

/** Whether a dropout drops: the module's mode, or what the functional call passes (training
 *  by default). A method reads its own mode, which train() and eval() set together with the
 *  submodule's; outside a method there is no `self`, and the module's own flag is what it reads. */
function trainingOf(op: Op, cx: AccessorContext): string | undefined {
  if (op.kind === 'module') {
    if (cx.selfInScope()) return 'self.training';
    if (op.callee.startsWith('%')) return cx.refuse('the dropout module is looked up where it is called, and no `self` is in scope to say whether it is training');
    const m = moduleRef(op, cx);
    return m === undefined ? undefined : `${m}.training`;
  }
  const t = keywordOf(op, 'training') ?? op.args[2];
  return t ? cx.expr(t) : 'True';
}

/** Arguments of a call besides the value it is applied to (its first positional argument). */
function furtherArguments(op: Op): { args: Expr[]; kw: [string, Expr][] } {
  return { args: op.args.slice(1), kw: op.kw.filter(([k]) => k !== ABSENT_IF_NONE) };
}

/** What to pass where a kernel takes an activation to call on one tensor. The call's other
 *  arguments travel with it: dropping them would hand the kernel another function
 *  (`F.gelu(g, approximate="tanh")` is not `F.gelu`). */
function callableOf(op: Op, cx: AccessorContext): string | undefined {
  const { args, kw } = furtherArguments(op);
  if (op.kind !== 'op') {
    // a submodule, or a function called by the name in scope here
    const fn = op.kind === 'module' ? (op.callee.startsWith('%') ? undefined : op.callee) : calledAs(op, cx);
    if (!fn || !/^[A-Za-z_][\w.]*$/.test(fn)) return undefined;
    if (args.length || kw.length) return cx.refuse(`the activation ${fn} is called with further arguments, which the kernel's one-argument call would drop`);
    return fn;
  }
  const fn = `torch.nn.functional.${op.callee}`;
  // the analysis turns the known positional settings into keywords: any left are not known
  if (args.length) return cx.refuse(`the activation ${op.callee} takes further positional arguments, which the kernel's one-argument call would drop`);
  if (!kw.length) return fn;
  const given: string[] = [];
  for (const [k, v] of kw) {
    const text = /^[A-Za-z_]\w*$/.test(k) && v ? cx.expr(v) : undefined;
    if (text === undefined) return cx.refuse(`the activation ${op.callee}'s argument ${k === '**' ? '**' : `${k}=`} cannot be passed along to the kernel`);
    given.push(`${k}=${text}`);
  }
  return `functools.partial(${fn}, ${given.join(', ')})`;
}

/** A keyword argument of the matched call; for a submodule, of its constructor (`nn.Softmax(dim=-1)`,
 *  whose first argument is the dim). */
function keyword(name: string): (op: Op, cx: AccessorContext) => string | undefined {
  return (op, cx) => {
    let kw = keywordOf(op, name);
    if (!kw && op.kind === 'module') {
      const ctor = cx.constructorOf(op);
      if (ctor?.k === 'call') kw = keywordOf(ctor, name) ?? (name === 'dim' ? ctor.args[0] : undefined);
    }
    return kw ? cx.expr(kw) : undefined;
  };
}

/** Keyword arguments a template may read by name (`{y.dim}`, `{,p.dtype}`). */
const KEYWORDS: [string, string][] = [
  ['dim', 'the dimension the op works along'],
  ['dtype', 'the dtype the op computes or casts to'],
  ['eps', 'a normalisation\'s epsilon'],
  ['keepdim', 'whether a reduction keeps the reduced dimension'],
  ['approximate', 'GELU\'s approximation (`none` or `tanh`)'],
  ['p', 'a dropout\'s probability, as passed'],
  ['training', 'a functional dropout\'s training flag, as passed'],
];

const ENTRIES: Accessor[] = [
  { name: 'factor', on: 'op', description: 'the multiplicative factor a scaling op (mul or div) applies to the matched value; a 0-d `torch.full` as the number it holds', read: factor },
  { name: 'last_dim_check', on: 'op', description: 'a Python condition that a reduction runs over the last dimension: `True` for `dim=-1`, `DIM == -1` for a dim known only at run time; the site is refused for another constant or several dims (`dim=(-2, -1)`)', read: lastDimCheck },
  { name: 'reshaped_as', on: 'op', description: 'a view/reshape written as a method call, to append to a value: `.view(<its arguments as written>)`', read: reshapedAs },
  { name: 'view_check', on: 'op', description: 'on a LayerNorm: a Python condition that the view/reshape of its input keeps the last dimension, which the norm alone normalises (`shape[-1] == x.shape[-1] and len(norm.normalized_shape) == 1`); `True` without one', read: viewCheck },
  { name: 'merge_check', on: 'op', description: 'a Python condition that a flatten (or reshape) merging stacked rotated pairs back into place merges the last two dimensions: `True` for `flatten(-2)` or a reshape to the tensor\'s own shape, `x.dim() == k + 1` for `flatten(k)`', read: mergeCheck },
  { name: 'rank_check', on: 'op or metavariable', description: 'a Python condition on the rank an index of full slices assumes (`x.dim() == 4`), `True` with `...`', read: rankCheck },
  {
    name: 'callable', on: 'op', description: 'what to call for the op, one argument in: the submodule, the function called by name, or the torch.nn.functional function it canonicalises to, given the call\'s keywords with `functools.partial` (`approximate="tanh"`); the site is refused for a call with arguments a one-argument callable cannot take',
    read: callableOf,
  },
  { name: 'source_callee', on: 'op', description: 'the function of the call as written (`torch.optim.AdamW`)', read: (op, cx) => { const n = cx.nodeAt(op); return n?.type === 'call' ? n.childForFieldName('function')?.text : undefined; } },
  {
    name: 'source_args', on: 'op', description: 'the argument list of the call as written, without its parentheses',
    read: (op, cx) => { const n = cx.nodeAt(op); const args = n?.type === 'call' ? n.childForFieldName('arguments') : null; return args?.type === 'argument_list' ? args.text.slice(1, -1).trim() : undefined; },
  },
  {
    name: 'train', on: 'op', description: 'whether a dropout applies: for a module, `self.training` in a method and the module\'s own `.training` elsewhere; the functional call\'s `training` (default True)',
    read: trainingOf,
  },
  {
    name: 'prob', on: 'op', description: 'a dropout\'s probability: the module\'s `.p`, or the functional call\'s `p` (default 0.5)',
    read: (op, cx) => { if (op.kind === 'module') { const m = op.callee.startsWith('%') ? undefined : moduleRef(op, cx); return m === undefined ? undefined : `${m}.p`; } const p = keywordOf(op, 'p') ?? op.args[1]; return p ? cx.expr(p) : '0.5'; },
  },
  {
    name: 'lm_loss', on: 'op', description: 'for a cross-entropy over an LM head\'s logits: the kernel\'s arguments after the head (labels before any shift, ignore_index, shift, reduction); the site is refused, with the reason, for a loss the kernel computes differently',
    read: (op, cx) => { const r = readLmLoss(op, cx); return typeof r === 'string' ? cx.refuse(r) : r.args; },
  },
  {
    name: 'lm_logits', on: 'op', description: 'for a cross-entropy over an LM head\'s logits: the variable holding the logits as the code keeps them (after a `.float()`), which the rewrite assigns',
    read: (op, cx) => { const r = readLmLoss(op, cx); return typeof r === 'string' ? cx.refuse(r) : r.logits; },
  },
  {
    name: 'lm_guard', on: 'op', description: 'for a cross-entropy over an LM head\'s logits: the run-time check the kernel needs (`True` for a loss written out; for `self.loss_function`, that it is transformers\' causal- or masked-LM loss with keywords the kernel takes)',
    read: (op, cx) => { const r = readLmLoss(op, cx); return typeof r === 'string' ? cx.refuse(r) : r.guard ?? 'True'; },
  },
  { name: 'module', on: 'op', description: 'the submodule (or table lookup) a module op calls; for functional GELU the function or its hidden_act name; for a function called by name, that name; for functional dropout its probability', read: moduleOf },
  { name: 'absent', on: 'op or metavariable', description: 'nothing when the optional line (or the line binding the metavariable) is absent or left to the original code; otherwise the site is not rewritten (the kernel does not cover it)' },
  ...KEYWORDS.map(([k, what]): Accessor => ({ name: k, on: 'op', description: `keyword \`${k}\` of the matched call (or of the module's constructor): ${what}`, read: keyword(k) })),
];

/** Every accessor, by name. */
export const ACCESSORS: ReadonlyMap<string, Accessor> = new Map(ENTRIES.map((a) => [a.name, a]));

/** Why `{name.part}` cannot be read, or undefined when it can: `part` must be an accessor, and
 *  one read on metavariables when `name` is a metavariable. */
export function accessorProblem(part: string, onMetavariable: boolean): string | undefined {
  const a = ACCESSORS.get(part);
  if (!a) return `no template accessor '${part}' (known: ${[...ACCESSORS.keys()].join(', ')})`;
  if (onMetavariable && a.on === 'op') return `accessor '${part}' reads a pattern line's op, not a metavariable (on metavariables: ${ENTRIES.filter((x) => x.on !== 'op').map((x) => x.name).join(', ')})`;
  return undefined;
}

/** The registry as rows for documentation and `adopt rules show`. */
export function accessorTable(): { name: string; on: string; description: string }[] {
  return ENTRIES.map(({ name, on, description }) => ({ name, on, description }));
}
