// What matching needs to know of one lowered method: its ops in order, where each value is
// defined and used, and the module attributes `self.x` calls resolve to (scope analysis).
import type { Attr, Expr, FileIR, Method, ModuleIR, Op, Phi, Stmt } from '../dsl/ir.js';
import { sequentialArgs } from '../analysis/layer-class.js';
import { sameExpr } from '../analysis/lower-support.js';

export type Use = { k: 'op'; op: Op } | { k: 'phi'; id: number } | { k: 'return' } | { k: 'cond' };

export interface MethodView {
  file: FileIR;
  module?: ModuleIR;
  /** For a method of a class that is not a module (setup code): that class's name. */
  owner?: string;
  method: Method;
  ops: Op[];
  defs: Map<number, Op>;
  uses: Map<number, Use[]>;
  nameUses: Map<string, Op[]>;
  attrs: Map<string, Attr[]>;
  /** Where a value's rank is known statically (for "the dim really is last"). */
  rank: Map<number, number>;
  /** Phi id → its inputs, so a match can follow a value through a branch merge (path-sensitively). */
  phis: Map<number, Expr[]>;
  /** How many branches or loops enclose each op (0: the method's top-level block). */
  depth: Map<number, number>;
  /** The branches enclosing each op, as `if-start:then|else` entries, outermost first. */
  paths: Map<number, string[]>;
}

/** Two ops on different branches of one `if` never both run. */
export function exclusive(view: MethodView, a: number, b: number): boolean {
  const pa = view.paths.get(a) ?? [];
  const pb = view.paths.get(b) ?? [];
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    if (pa[i] === pb[i]) continue;
    const [ia, ib] = [pa[i].split(':'), pb[i].split(':')];
    return ia[0] === ib[0] && ia[1] !== ib[1];
  }
  return false;
}

export function viewOf(file: FileIR, method: Method, module?: ModuleIR): MethodView {
  const v: MethodView = { file, module, method, ops: [], defs: new Map(), uses: new Map(), nameUses: new Map(), attrs: new Map(), rank: new Map(), phis: new Map(), depth: new Map(), paths: new Map() };
  for (const a of module?.attrs ?? []) {
    const list = v.attrs.get(a.name) ?? [];
    list.push(a);
    v.attrs.set(a.name, list);
  }
  // every operand of a tuple, list, dict, star or slice, in order
  const use = (e: Expr, u: Use): void => {
    switch (e.k) {
      case 'tuple': case 'list': for (const x of e.items) use(x, u); return;
      case 'dict': for (const [k, x] of e.items) { use(k, u); use(x, u); } return;
      case 'star': use(e.e, u); return;
      case 'slice': for (const x of [e.lo, e.hi, e.step]) if (x) use(x, u); return;
      case 'ssa': {
        const l = v.uses.get(e.id);
        if (l) l.push(u); else v.uses.set(e.id, [u]);
        return;
      }
      case 'name': {
        if (u.k !== 'op') return;
        const l = v.nameUses.get(e.path);
        if (l) l.push(u.op); else v.nameUses.set(e.path, [u.op]);
        return;
      }
      default: return;
    }
  };
  const usePhis = (phis: Phi[]) => {
    for (const p of phis) {
      v.phis.set(p.id, p.ins);
      const u: Use = { k: 'phi', id: p.id };
      for (const x of p.ins) use(x, u);
    }
  };
  const walk = (stmts: Stmt[], depth = 0, path: string[] = []) => {
    for (const s of stmts) {
      switch (s.k) {
        case 'op':
          v.ops.push(s);
          v.depth.set(s.id, depth);
          if (path.length) v.paths.set(s.id, path);
          v.defs.set(s.id, s);
          // one use record per op, shared by its operands (uses are only read)
          const u: Use = { k: 'op', op: s };
          for (const a of s.args) use(a, u);
          for (const [, a] of s.kw) use(a, u);
          break;
        case 'if': {
          use(s.cond, { k: 'cond' });
          // a branch a constant condition never takes (`if use_real:` of a helper inlined with
          // its default True) holds no code that runs: nothing there is matched
          const known = staticTruth(v, s.cond);
          if (known === true) walk(s.then, depth, path);
          else if (known === false) walk(s.else, depth, path);
          else {
            walk(s.then, depth + 1, [...path, `${s.span.start}:then`]);
            walk(s.else, depth + 1, [...path, `${s.span.start}:else`]);
          }
          usePhis(s.phis);
          break;
        }
        case 'for':
          use(s.iter, { k: 'cond' });
          usePhis(s.phis);
          walk(s.body, depth + 1, path);
          break;
        case 'return':
          if (s.value) use(s.value, { k: 'return' });
          break;
        default: break;
      }
    }
  };
  walk(method.body);
  inferRanks(v);
  return v;
}

/** The value of a condition known before run time: a constant (`if True:`), `==`/`!=` of two
 *  constants (`if -1 == -1:` where a helper's argument was inlined), `torch.jit.is_scripting()`;
 *  undefined otherwise. */
function staticTruth(v: MethodView, cond: Expr): boolean | undefined {
  if (cond.k === 'const') return typeof cond.v === 'boolean' ? cond.v : undefined;
  const d = cond.k === 'ssa' ? v.defs.get(cond.id) : undefined;
  // False wherever Python runs the code; TorchScript compiles a method as a whole, and a
  // rewritten one (calling the kernels' Python wrappers) is not scriptable in any case
  if (d?.kind === 'call' && d.callee === 'torch.jit.is_scripting' && !d.args.length) return false;
  if (!d || d.kind !== 'op' || (d.callee !== 'eq' && d.callee !== 'ne') || d.args.length !== 2) return undefined;
  const [a, b] = d.args;
  if (a.k !== 'const' || b.k !== 'const' || typeof a.v !== typeof b.v || typeof a.v === 'object') return undefined;
  return (a.v === b.v) === (d.callee === 'eq');
}

/** The attribute a `self.x(...)` call refers to: its one definition, or the one value every
 *  definition gives it. Where `__init__` builds it in more than one way (an `if` choosing the
 *  arguments, a default then a conditional override), which one a given instance holds is not
 *  known statically, and no constructor argument may be read from it. */
export function attrOf(view: MethodView, op: Op): Attr | undefined {
  if (op.kind !== 'module' || !op.callee.startsWith('self.')) return undefined;
  const m = /^self\.([A-Za-z_]\w*)(?:\[(\d+)\])?$/.exec(op.callee);
  if (!m) return undefined;
  const defs = view.attrs.get(m[1]);
  if (!defs?.length) return undefined;
  const attr = defs[defs.length - 1];
  if (defs.some((d) => !sameExpr(d.value, attr.value))) return undefined;
  if (m[2] === undefined) return attr;
  // an element of an nn.Sequential: its own constructor
  const item = attr.value.k === 'call' ? sequentialArgs(attr.value.args)[Number(m[2])] : undefined;
  return item ? { ...attr, value: item } : undefined;
}

/** Every definition __init__ gives the attribute a `self.x(...)` call refers to (an element's
 *  own constructor for `self.x[i]`), for checks that hold over all the ways it may be built. */
export function attrDefs(view: MethodView, op: Op): Attr[] {
  const one = attrOf(view, op);
  if (one) return [one];
  const m = op.kind === 'module' ? /^self\.([A-Za-z_]\w*)$/.exec(op.callee) : null;
  return (m && view.attrs.get(m[1])) || [];
}

/** Why `attrOf` knows no constructor for a `self.x(...)` call that __init__ does define: the
 *  definitions that disagree, for the reason a near miss gives. */
export function ctorUnknown(view: MethodView, op: Op): string | undefined {
  const m = /^self\.([A-Za-z_]\w*)/.exec(op.callee);
  const defs = m ? view.attrs.get(m[1]) : undefined;
  if (!defs || defs.length < 2 || attrOf(view, op)) return undefined;
  return `${op.callee} is built in ${defs.length} ways in __init__ (lines ${defs.map((d) => d.span.from.line).join(', ')}), so its settings are not known statically`;
}

/** Modules that map the last dimension and keep the others: the rank stays. */
const RANK_KEEPING_MODULE = /(^|\.)(Linear|LayerNorm|RMSNorm|Dropout|GELU|ReLU|SiLU|Tanh|Sigmoid|Identity)$/;

const RANK_KEEPING = new Set(['softmax', 'log_softmax', 'dropout', 'to', 'contiguous', 'float', 'type_as', 'relu', 'gelu', 'tanh', 'sigmoid', 'exp', 'neg', 'masked_fill', 'clamp', 'transpose', 'sqrt', 'rsqrt', 'log', 'abs']);

/** Static ranks where the code shows them: view/reshape with n sizes, einsum outputs, matmul
 *  of known ranks, elementwise ops. Enough to tell whether `softmax(x, dim=3)` is last-dim. */
function inferRanks(v: MethodView): void {
  // a value merged from branches has a rank when every branch gives it the same one (a constant
  // on one branch, `ef = 0`, is a scalar that broadcasts)
  const r = (e: Expr | undefined, depth = 0): number | undefined => {
    if (e?.k !== 'ssa') return undefined;
    const known = v.rank.get(e.id);
    if (known !== undefined || depth > 8) return known;
    const ins = v.phis.get(e.id);
    if (!ins) return undefined;
    const ranks = ins.filter((x) => x.k !== 'const').map((x) => r(x, depth + 1));
    return ranks.length && ranks.every((x) => x !== undefined && x === ranks[0]) ? ranks[0] : undefined;
  };
  /** An operand of an elementwise op: its rank, 0 for a number, undefined when unknown. */
  const operandRank = (e: Expr | undefined): number | undefined => {
    if (!e) return undefined;
    if (e.k === 'const') return typeof e.v === 'number' ? 0 : undefined;
    if (e.k === 'ssa' && isShapeEntry(v, e.id)) return 0;
    if (e.k === 'name') return isScalarAttr(v, e.path) ? 0 : undefined;
    return r(e);
  };
  for (const op of v.ops) {
    if (op.kind === 'module' && (op.type ?? []).some((t) => RANK_KEEPING_MODULE.test(t))) {
      const x = r(op.args[0]);
      if (x !== undefined) v.rank.set(op.id, x);
      continue;
    }
    if (op.kind !== 'op') continue;
    let rank: number | undefined;
    const a = op.args;
    switch (op.callee) {
      case 'view': case 'reshape': {
        const sizes = a.slice(1);
        if (sizes.length === 1 && (sizes[0].k === 'tuple' || sizes[0].k === 'list')) rank = sizes[0].items.length;
        else if (sizes.length > 1 && sizes.every((s) => s.k !== 'star')) rank = sizes.length;
        break;
      }
      case 'einsum': {
        const eq = a[0];
        if (eq?.k === 'const' && typeof eq.v === 'string' && eq.v.includes('->') && !eq.v.includes('...')) rank = eq.v.split('->')[1].trim().length;
        break;
      }
      case 'matmul': {
        const [x, y] = [r(a[0]), r(a[1])];
        if (x !== undefined && y !== undefined) rank = Math.max(x, y);
        break;
      }
      case 'unsqueeze': { const x = r(a[0]); if (x !== undefined) rank = x + 1; break; }
      case 'permute': {
        const dims = a.slice(1);
        if (dims.length === 1 && (dims[0].k === 'tuple' || dims[0].k === 'list')) rank = dims[0].items.length;
        else if (dims.length > 1 && dims.every((d) => d.k === 'const')) rank = dims.length;
        break;
      }
      case 'add': case 'sub': case 'mul': case 'div': {
        // broadcasting: the larger rank, when both are known and one is a tensor's
        const [x, y] = [operandRank(a[0]), operandRank(a[1])];
        if (x !== undefined && y !== undefined && (a[0]?.k === 'ssa' || a[1]?.k === 'ssa')) rank = Math.max(x, y);
        break;
      }
      case 'getitem': {
        // an element of a tuple of values (`a, b = (f(t) for t in ...)`) is that value
        if (a[0]?.k === 'tuple' && a[1]?.k === 'const' && typeof a[1].v === 'number') { rank = r(a[0].items[a[1].v]); break; }
        // slicing every dimension it names (no integer, None or ...) keeps the rank
        const idx = a[1];
        const items = idx?.k === 'tuple' ? idx.items : idx ? [idx] : [];
        if (items.length && items.every((i) => i.k === 'slice')) rank = r(a[0]);
        break;
      }
      case 'index_select': rank = r(a[0]); break;
      case 'bmm': case 'baddbmm': rank = 3; break;
      case 'int': case 'float': case 'pow': case 'floordiv': case 'truediv':
        // arithmetic on Python numbers (`int(c) ** -0.5`, sizes read off a shape) is a number;
        // so is a size divided by what __init__ stored as given (`c // self.num_heads`): integer
        // division of a shape entry by a tensor is not how code is written
        if (a.every((x) => operandRank(x) === 0)) rank = 0;
        else if (op.callee === 'floordiv' && operandRank(a[0]) === 0 && a[1]?.k === 'name' && isStoredArgument(v, a[1].path)) rank = 0;
        else if (op.callee === 'pow' && operandRank(a[1]) === 0) rank = r(a[0]);
        break;
      default:
        // of a number too (`math.sqrt(d)`, which the analysis reads as sqrt): a number
        if (RANK_KEEPING.has(op.callee)) rank = operandRank(a[0]);
    }
    if (rank !== undefined) v.rank.set(op.id, rank);
  }
  for (const id of v.phis.keys()) {
    const x = r({ k: 'ssa', id });
    if (x !== undefined) v.rank.set(id, x);
  }
}

/** `x.shape[i]` or `x.size(i)`, or a name unpacked from `b, c, h, w = x.shape`: a number. */
function isShapeEntry(v: MethodView, id: number): boolean {
  const op = v.defs.get(id);
  if (op?.callee === 'size' && op.args.length + op.kw.length >= 2) return true;
  if (op?.callee !== 'getitem' || op.args[1]?.k !== 'const' || typeof op.args[1].v !== 'number') return false;
  const base = op.args[0]?.k === 'ssa' ? v.defs.get(op.args[0].id) : undefined;
  return (base?.callee === 'getattr' && base.args[1]?.k === 'const' && base.args[1].v === 'shape') || (base?.callee === 'size' && base.args.length === 1);
}

const ARITHMETIC = new Set(['add', 'sub', 'mul', 'div', 'truediv', 'floordiv', 'pow', 'neg', 'math.sqrt', 'sqrt', 'float', 'int']);

/** `self.heads` set in __init__ to one of its arguments as given (`self.heads = heads`). */
function isStoredArgument(v: MethodView, path: string): boolean {
  const m = /^self\.([A-Za-z_]\w*)$/.exec(path);
  const defs = m ? v.attrs.get(m[1]) : undefined;
  return !!defs?.length && defs.every((d) => d.value.k === 'name' && /^[A-Za-z_]\w*$/.test(d.value.path));
}

/** `self.scale` set in __init__ from numbers and config values only (`1 / config.d_head ** 0.5`):
 *  a Python number, not a tensor. */
function isScalarAttr(v: MethodView, path: string): boolean {
  const m = /^self\.([A-Za-z_]\w*)$/.exec(path);
  const defs = m ? v.attrs.get(m[1]) : undefined;
  if (!defs?.length) return false;
  // a constructor argument is a number where __init__ also uses it as a layer size
  // (`dim_head ** -0.5` beside `nn.Linear(dim, heads * dim_head)`)
  const sizes = sizeNames(v);
  const scalar = (e: Expr, depth = 0): boolean => {
    if (depth > 16) return false;
    if (e.k === 'const') return typeof e.v === 'number';
    if (e.k === 'name') return /^config\.\w+$/.test(e.path) || sizes.has(e.path);
    if (e.k === 'call') return ARITHMETIC.has(e.callee) && e.kw.length === 0 && e.args.every((x) => scalar(x, depth + 1));
    return false;
  };
  return defs.every((d) => scalar(d.value));
}

const SIZED_LAYER = /(^|\.)(Linear|Conv[123]d|ConvTranspose[123]d|Embedding|LayerNorm|BatchNorm[123]d|GroupNorm)$/;

/** Names __init__ passes to a layer constructor as sizes (in any arithmetic): integers. */
const sizeNamesOf = new WeakMap<MethodView, Set<string>>();

function sizeNames(v: MethodView): Set<string> {
  const known = sizeNamesOf.get(v);
  if (known) return known;
  const out = new Set<string>();
  sizeNamesOf.set(v, out);
  const names = (e: Expr): void => {
    if (e.k === 'name' && /^[A-Za-z_]\w*$/.test(e.path)) out.add(e.path);
    else if (e.k === 'call' && ARITHMETIC.has(e.callee)) e.args.forEach(names);
  };
  const visit = (e: Expr): void => {
    if (e.k !== 'call') return;
    if (SIZED_LAYER.test(e.callee)) e.args.forEach(names);
    e.args.forEach(visit);
  };
  for (const defs of v.attrs.values()) for (const d of defs) visit(d.value);
  return out;
}

/** Ops that use a value, directly or through the phis it flows into. */
export function usersOf(view: MethodView, id: number, seen = new Set<number>()): Op[] {
  if (seen.has(id)) return [];
  seen.add(id);
  const out: Op[] = [];
  for (const u of view.uses.get(id) ?? []) {
    if (u.k === 'op') out.push(u.op);
    else if (u.k === 'phi') out.push(...usersOf(view, u.id, seen));
  }
  return out;
}

/** Whether anything reads a phi's value, directly or through later phis: a variable assigned in
 *  one branch and never read after it (`variance` of an RMSNorm's else branch) leaves a dead phi. */
export function phiRead(view: MethodView, id: number, seen = new Set<number>()): boolean {
  if (seen.has(id)) return false;
  seen.add(id);
  return (view.uses.get(id) ?? []).some((u) => u.k !== 'phi' || phiRead(view, u.id, seen));
}

/** `e` is `v`, or a phi that `v` flows into (the match then holds on that path). */
export function reaches(view: MethodView, v: Expr, e: Expr, depth = 0): boolean {
  if (sameJson(v, e)) return true;
  if (e.k !== 'ssa' || depth > 8) return false;
  const ins = view.phis.get(e.id);
  return !!ins && ins.some((x) => reaches(view, v, x, depth + 1));
}

/** JSON.stringify(a) === JSON.stringify(b), without building the strings where the answer is
 *  plain: the same object, a different kind, or two values of different ids (most calls compare
 *  two SSA values). */
function sameJson(a: Expr, b: Expr): boolean {
  if (a === b) return true;
  if (a.k !== b.k) return false;
  if (a.k === 'ssa' && b.k === 'ssa' && a.id !== b.id) return false;
  return JSON.stringify(a) === JSON.stringify(b);
}
