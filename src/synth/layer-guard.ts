// A module built through a layer class chosen by a parameter (`self.bn = norm_layer(c)`, with
// `norm_layer=nn.BatchNorm2d` by default) matched a rule as its default class; a caller may pass
// another class. The rewrite then also checks at run time that the module is exactly the default
// class, so any other layer runs the original code.
import type { Expr, Op } from '../dsl/ir.js';
import { layerClassOf } from '../analysis/layer-class.js';
import type { Site } from '../match/matcher.js';
import type { Rule } from '../match/rule.js';
import { attrDefs, attrOf } from '../match/method.js';
import { KERNELS_ALIAS } from './edits.js';
import { constText } from './expressions.js';

/** One guard per matched submodule whose class is a parameter's default, in pattern order. */
export function layerClassGuards(s: Site): string[] {
  const out: string[] = [];
  for (const op of Object.values(s.ops)) {
    if (!op || op.kind !== 'module') continue;
    const cls = chosenClass(s, op);
    if (cls) out.push(`${KERNELS_ALIAS}.built_as(${op.callee}, ${classRef(s, cls)})`);
  }
  return out;
}

function chosenClass(s: Site, op: Op): string | undefined {
  // where __init__ builds the layer in several ways, the class any of them chooses: the guard
  // admits that class alone, so a layer built another way takes the original code
  for (const attr of attrDefs(s.view, op)) {
    const cls = layerClassOf(attr.value, attr.defaults);
    if (cls) return cls;
  }
  return undefined;
}

/** A class of the file being rewritten is named as the file sees it (its module's name depends
 *  on how the file is imported); any other by its qualified name. */
function classRef(s: Site, cls: string): string {
  const own = `${s.view.file.module}.`;
  return cls.startsWith(own) && !cls.slice(own.length).includes('.') ? cls.slice(own.length) : JSON.stringify(cls);
}

/** One guard per matched submodule the fast path does not call, nor hand to the kernel (a
 *  Softmax or a loss module whose computation the kernel does itself): the rewrite stands in for
 *  it only where calling it would run its class's forward and nothing else, so a hook on it (an
 *  attention map recorded from `self.attend`) keeps the original code. `replaced` tells the ops
 *  the rewrite replaces from those it leaves to run (a projection before a rewritten expression). */
export function skippedModuleGuards(s: Site, rule: Rule, replaced: (op: Op) => boolean): string[] {
  const templates = [...(rule.rewrite?.guards ?? []), ...(rule.rewrite?.code ?? [])].join('\n');
  const out = new Set<string>();
  for (const p of rule.pattern) {
    const op = s.ops[p.name];
    if (!op || op.kind !== 'module' || !replaced(op) || !/^self\.[A-Za-z_][\w.]*(\[\d+\])?$/.test(op.callee)) continue;
    // `{d.module|0.0}`, `{a.callable}`: the module itself goes to the kernel, which checks it;
    // `{e}` is the value the call returned (a statement rewrite's target), not the module
    const handed = new RegExp(`\\{[?,]?${p.name}\\.(?:module|callable)[}|]`).test(templates);
    if (!handed) out.add(asBuiltGuard(s, op));
  }
  return [...out];
}

/** `_adopt.built_with(self.attend, "torch.nn.Softmax", dim=-1)`: the module is still what the
 *  constructor call the rewrite read from `__init__` builds (class, hooks, every setting), so a
 *  setting changed later, class weights given, or another module put in its place keeps the
 *  original code. A keyword whose value the forward cannot restate (`ignore_index=config.pad_token_id`)
 *  is taken as the module holds it (`as_set`); where a positional argument cannot be restated,
 *  or the class is not known, the guard asks only that calling the module runs its forward alone. */
function asBuiltGuard(s: Site, op: Op): string {
  const ctor = attrOf(s.view, op)?.value;
  const cls = op.type?.[0];
  if (ctor?.k === 'call' && cls) {
    const args = ctor.args.map(constantText);
    const named = ctor.kw.filter(([k]) => /^[A-Za-z_]\w*$/.test(k));
    if (!args.includes(undefined) && named.length === ctor.kw.length) {
      // a keyword given a value of __init__'s own (`ignore_index=config.pad_token_id`) is taken
      // as the module holds it, and every other setting still compared
      const given = named.filter(([, v]) => constantText(v) !== undefined).map(([k, v]) => `${k}=${constantText(v)}`);
      const asSet = named.filter(([, v]) => constantText(v) === undefined).map(([k]) => JSON.stringify(k));
      const keep = asSet.length ? [`as_set=(${asSet.join(', ')}${asSet.length === 1 ? ',' : ''})`] : [];
      return `${KERNELS_ALIAS}.built_with(${[op.callee, classRef(s, cls), ...args, ...given, ...keep].join(', ')})`;
    }
  }
  return `${KERNELS_ALIAS}.runs_its_forward(${op.callee})`;
}

/** A constructor argument as Python source, where it is a constant (or a tuple of them) or an
 *  attribute of the module being rewritten, which the forward reads as `__init__` did. */
function constantText(e: Expr): string | undefined {
  if (e.k === 'name') return /^self\.[A-Za-z_][\w.]*$/.test(e.path) ? e.path : undefined;
  if (e.k === 'tuple') {
    const items = e.items.map(constantText);
    return items.includes(undefined) ? undefined : `(${items.join(', ')}${items.length === 1 ? ',' : ''})`;
  }
  return e.k === 'const' ? constText(e) : undefined;
}
