// Setup code: what builds a model and its training rather than what a model runs. An nn.Module's
// __init__, the methods of classes that are not modules (a trainer's __init__, a
// configure_optimizers), and functions defined inside functions. The IR, and what `adopt explain`
// prints, is the code a model runs; setup code is lowered the same way, on request, for the rules
// that look there (`scope setup`): lowering every __init__ of HF-199 (their base classes' __init__
// and post_init inlined) costs about a second, for code that only an optimizer rule reads.
import type { Diagnostic } from '../diag.js';
import type { FileIR, Method, ModuleIR } from '../dsl/ir.js';
import type { SyntaxNode } from '../parse/python.js';
import type { ClassInfo, ClassTable } from './classes.js';
import { MethodLowerer } from './lower.js';
import type { Resolver } from './resolve.js';
import { field, type FileSymbols, type FuncDef } from './symbols.js';

export interface SetupUnit {
  /** Named within its class or file: `__init__`, `configure`, `main.<locals>.build`. */
  method: Method;
  /** The nn.Module the code belongs to: its __init__, or a function defined in one of its methods. */
  module?: ModuleIR;
  /** The class that is not a module whose method (or a function defined in one) it is. */
  owner?: string;
  /** Its qualified name, as an inlined helper is named in `via` (`pkg.train.Trainer.configure`). */
  qual: string;
}

const deferred = new WeakMap<FileIR, { text: string; lower: () => SetupUnit[] }>();
const done = new WeakMap<FileIR, SetupUnit[]>();

/** The setup code of an analysed file, lowered on the first call that wants it; none for a file
 *  the analysis did not produce (a program parsed back from the DSL). With `spelled`, only a file
 *  whose text holds one of these words is wanted: the others give none. */
export function setupCode(file: FileIR, spelled?: readonly string[]): SetupUnit[] {
  const known = done.get(file);
  if (known) return known;
  const pending = deferred.get(file);
  if (!pending || (spelled && !spelled.some((w) => pending.text.includes(w)))) return [];
  const units = pending.lower();
  done.set(file, units);
  deferred.delete(file);
  return units;
}

/** Registers how to lower a file's setup code once it is asked for. `modules`: the file's
 *  ModuleIR by class, for the units that belong to one. */
export function deferSetupCode(file: FileIR, syms: FileSymbols, resolver: Resolver, classes: ClassTable, modules: Map<string, ModuleIR>): void {
  deferred.set(file, { text: syms.parsed.source.text, lower: () => lowerSetup(file, syms, resolver, classes, modules) });
}

interface Place { cls?: ClassInfo; module?: ModuleIR; owner?: string; prefix: string }

function lowerSetup(file: FileIR, syms: FileSymbols, resolver: Resolver, classes: ClassTable, modules: Map<string, ModuleIR>): SetupUnit[] {
  const units: SetupUnit[] = [];
  // What lowering setup code says of it (a limit hit, a recursive helper cut) is not reported:
  // the file's diagnostics are about the code the analysis shows, and setup code a limit stops is
  // only code that is not searched.
  const quiet: Diagnostic[] = [];
  const add = (fn: FuncDef, at: Place) => {
    let method: Method;
    try {
      method = new MethodLowerer(resolver, classes, file.path, quiet).lower(fn, at.cls);
    } catch {
      // a unit that cannot be lowered (nested deeper than lowering goes) is only a unit not
      // searched: the model code was analysed, and the rewrite goes on without it
      return;
    }
    units.push({ method: { ...method, name: fn.qual.slice(at.prefix.length + 1) }, qual: fn.qual, ...(at.module ? { module: at.module } : {}), ...(at.owner ? { owner: at.owner } : {}) });
  };
  const nested = (fn: FuncDef, at: Place) => { for (const inner of nestedFunctions(fn)) add(inner, at); };
  for (const def of syms.classes) {
    const info = classes.info(def);
    if (!info) continue;
    const module = info.isModule ? modules.get(def.qual) : undefined;
    const at: Place = module ? { cls: info, module, prefix: def.qual } : { cls: info, owner: def.name, prefix: def.qual };
    for (const fn of def.methods.values()) {
      // the rest is model code: a module's other methods, a callable object's __call__
      if (info.isModule ? fn.name === '__init__' : fn.name !== '__call__') add(fn, at);
      nested(fn, at);
    }
  }
  for (const fn of syms.functions) nested(fn, { prefix: syms.module });
  return units.sort((a, b) => a.method.span.start - b.method.span.start);
}

// the statements that hold blocks of statements, where a `def` may stand
const HOLDS_STATEMENTS = /^(block|(if|for|while|with|try|match)_statement|(elif|else|except|except_group|finally|case)_clause)$/;

/** The functions defined inside a function, at any depth, each named as Python names it
 *  (`outer.<locals>.inner`); a class defined inside is not looked into. */
function nestedFunctions(fn: FuncDef): FuncDef[] {
  const out: FuncDef[] = [];
  const visit = (node: SyntaxNode | null, outer: FuncDef) => {
    for (const c of node?.namedChildren ?? []) {
      const d = c.type === 'decorated_definition' ? field(c, 'definition') : c;
      if (d?.type === 'function_definition') {
        const name = field(d, 'name')?.text;
        if (!name) continue;
        const def: FuncDef = { name, qual: `${outer.qual}.<locals>.${name}`, node: d, module: outer.module };
        out.push(def);
        visit(field(d, 'body'), def);
      } else if (HOLDS_STATEMENTS.test(c.type)) visit(c, outer);
    }
  };
  visit(field(fn.node, 'body'), fn);
  return out;
}
