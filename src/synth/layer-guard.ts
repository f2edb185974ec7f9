// A module built through a layer class chosen by a parameter (`self.bn = norm_layer(c)`, with
// `norm_layer=nn.BatchNorm2d` by default) matched a rule as its default class; a caller may pass
// another class. The rewrite then also checks at run time that the module is exactly the default
// class, so any other layer runs the original code.
import type { Op } from '../dsl/ir.js';
import { layerClassOf } from '../analysis/layer-class.js';
import type { Site } from '../match/matcher.js';
import type { Rule } from '../match/rule.js';
import { attrDefs } from '../match/method.js';
import { KERNELS_ALIAS } from './edits.js';

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
    // `{a}`, `{d.module|0.0}`, `{a.callable}`: the module itself goes to the kernel, which checks it
    const handed = new RegExp(`\\{[?,]?${p.name}(?:\\.(?:module|callable))?[}|]`).test(templates);
    if (!handed) out.add(`${KERNELS_ALIAS}.runs_its_forward(${op.callee})`);
  }
  return [...out];
}
