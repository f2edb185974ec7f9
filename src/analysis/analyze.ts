// The analysis stage's entry point: project files in, architecture DSL (Program) out.
import type { Diagnostic } from '../diag.js';
import type { FileIR, Method, ModuleIR, Program } from '../dsl/ir.js';
import { ClassTable, spanOf } from './classes.js';
import { MethodLowerer } from './lower.js';
import { Project, type FileUnit, type ProjectOptions } from './project.js';
import { Resolver } from './resolve.js';
import { deferSetupCode } from './setup.js';
import { field, type ClassDef, type FileSymbols } from './symbols.js';
import type { SyntaxNode } from '../parse/python.js';
import { posAt } from '../parse/source.js';

export interface Analysis { program: Program; project: Project }

export function analyzePaths(inputs: string[], opts: ProjectOptions = {}): Analysis {
  const project = Project.open(inputs, opts);
  return { program: analyzeProject(project), project };
}

export function analyzeProject(project: Project): Program {
  const resolver = new Resolver(project);
  const classes = new ClassTable(resolver);
  // Every target is read and parsed before any is analysed: tree-sitter's parse tables stay in
  // the processor's caches across one run of parses, and a parse between two analyses costs half
  // as much again. Files that imports lead to are still parsed on first use.
  for (const unit of project.targets) project.load(unit);
  const files: FileIR[] = [];
  for (const unit of project.targets) files.push(analyzeFile(unit, project, resolver, classes));
  return { version: 1, root: project.root, files };
}

function analyzeFile(unit: FileUnit, project: Project, resolver: Resolver, classes: ClassTable): FileIR {
  const syms = project.load(unit);
  const diagnostics: Diagnostic[] = [];
  const ir: FileIR = { path: unit.path, module: unit.module, modules: [], functions: [], diagnostics };
  if (!syms) {
    diagnostics.push(...unit.diagnostics);
    return ir;
  }
  const src = syms.parsed.source;
  const lowerWith = (fn: Parameters<MethodLowerer['lower']>[0], cls?: Parameters<MethodLowerer['lower']>[1]): Method | undefined => {
    try {
      return new MethodLowerer(resolver, classes, unit.path, diagnostics).lower(fn, cls);
    } catch (e) {
      const p = posAt(src, fn.node.startIndex);
      const err = e as Error;
      const why = err instanceof RangeError ? 'too deeply nested to analyse' : `internal error: ${err.message}`;
      diagnostics.push({ severity: 'error', code: 'analysis', file: unit.path, line: p.line, col: p.col, message: `${fn.qual}: ${why}` });
      return undefined;
    }
  };
  for (const def of syms.classes) {
    const info = classes.info(def);
    if (info && !info.isModule) {
      // a callable object that is not a module (diffusers' attention processors, handed the
      // module they compute for): its __call__ is model code like a function's
      const call = def.methods.get('__call__');
      const lowered = call && lowerWith(call, info);
      if (lowered) ir.functions.push(lowered);
    }
    if (!info?.isModule) continue;
    const m: ModuleIR = {
      name: def.name, qualname: def.qual, bases: info.bases.map((b) => b.qual),
      span: spanOf(src, def.node, unit.path), attrs: info.attrs, methods: [], inherited: [],
    };
    for (const fn of def.methods.values()) {
      if (fn.name === '__init__') continue;
      const lowered = lowerWith(fn, info);
      if (lowered) m.methods.push(lowered);
    }
    if (!def.methods.has('forward')) {
      const f = classes.findMethod(info, 'forward');
      if (f) m.inherited.push(['forward', f.cls.def.qual]);
    }
    ir.modules.push(m);
  }
  for (const fn of syms.functions) {
    const lowered = lowerWith(fn);
    if (lowered) ir.functions.push(lowered);
  }
  deferSetupCode(ir, syms, resolver, classes, new Map(ir.modules.map((m) => [m.qualname, m])));
  diagnostics.push(...modulesInFunctions(syms, unit.path, classes));
  diagnostics.unshift(...unit.diagnostics, ...unresolvedImports(unit, project), ...starImportsNotFollowed(unit, project));
  return ir;
}

/** Project imports (relative, or under the file's own top package) that name no file. */
function unresolvedImports(unit: FileUnit, project: Project): Diagnostic[] {
  const syms = unit.symbols;
  if (!syms) return [];
  const top = unit.module.split('.')[0];
  const out: Diagnostic[] = [];
  for (const { module, node } of syms.importNodes) {
    const relative = node.type === 'relative_import';
    if (!relative && module.split('.')[0] !== top) continue;
    if (project.moduleFile(module)) continue;
    const p = posAt(syms.parsed.source, node.startIndex);
    const depth = unit.module.split('.').length - (unit.isPackage ? 0 : 1);
    const level = relative ? (node.namedChildren.find((c) => c.type === 'import_prefix')?.text.length ?? 0) : 0;
    const message = level > depth
      ? `cannot resolve import '${node.text}': it goes beyond the top-level package ${unit.module.split('.')[0]}`
      : `cannot resolve import '${node.text}' (module ${module}) under ${(relative && project.packageBase(unit)) || project.root}`;
    out.push({ severity: 'warning', code: 'import-unresolved', file: unit.path, line: p.line, col: p.col, message });
  }
  return out;
}

/** `from M import *` of a module outside the project: which names it binds is not known, so the
 *  names the file uses from it stay unqualified, and the user is told why. */
function starImportsNotFollowed(unit: FileUnit, project: Project): Diagnostic[] {
  const syms = unit.symbols;
  if (!syms) return [];
  const out: Diagnostic[] = [];
  for (const { module, node } of syms.starImports) {
    if (project.moduleFile(module)) continue;
    const p = posAt(syms.parsed.source, node.startIndex);
    out.push({ severity: 'warning', code: 'star-import', file: unit.path, line: p.line, col: p.col, message: `names imported by 'from ${node.text} import *' are not resolved (${module} is not a file of the project): import them by name` });
  }
  return out;
}

// a class statement on an indented line: the only place a class inside a function can start
const INDENTED_CLASS = /^[ \t]+class\b/gm;

/** nn.Module classes defined inside a function (a model factory's `class Inner(nn.Module)`):
 *  analysis reads classes at a file's top level only, so such a module is not in the program, and
 *  what the function returns is not known to be it. Found from the text, then the nodes around
 *  each hit, so that files without one cost a regex scan. */
function modulesInFunctions(syms: FileSymbols, path: string, classes: ClassTable): Diagnostic[] {
  const text = syms.parsed.source.text;
  const out: Diagnostic[] = [];
  INDENTED_CLASS.lastIndex = 0;
  for (let m = INDENTED_CLASS.exec(text); m; m = INDENTED_CLASS.exec(text)) {
    const at = m.index + m[0].length - 'class'.length;
    const chain = nodesAround(syms.parsed.root, at);
    const node = chain[chain.length - 1];
    if (node?.type !== 'class_definition' || node.startIndex !== at) continue;
    const fn = [...chain].reverse().find((n) => n.type === 'function_definition');
    if (!fn) continue;
    const name = field(node, 'name')?.text ?? '?';
    const fnName = field(fn, 'name')?.text ?? '?';
    const sup = field(node, 'superclasses');
    const def: ClassDef = {
      name, qual: `${syms.module}.${fnName}.<locals>.${name}`, node, module: syms.module, methods: new Map(),
      baseNodes: sup ? sup.namedChildren.filter((c) => c.type !== 'keyword_argument' && c.type !== 'comment') : [],
    };
    for (const c of field(node, 'body')?.namedChildren ?? []) {
      const f = c.type === 'decorated_definition' ? field(c, 'definition') : c;
      const n = f?.type === 'function_definition' ? field(f, 'name')?.text : undefined;
      if (f && n) def.methods.set(n, { name: n, qual: `${def.qual}.${n}`, node: f, module: syms.module, owner: def });
    }
    if (!classes.info(def)?.isModule) continue;
    const p = posAt(syms.parsed.source, at);
    out.push({ severity: 'warning', code: 'nested-module', file: path, line: p.line, col: p.col, message: `module class ${name} is defined inside function ${fnName}: it is not analysed (define it at the top level of the file)` });
  }
  return out;
}

/** The nodes from the root down whose range holds `index`, deepest last. */
function nodesAround(root: SyntaxNode, index: number): SyntaxNode[] {
  const chain: SyntaxNode[] = [];
  for (let node: SyntaxNode | undefined = root; node; ) {
    chain.push(node);
    const kids: SyntaxNode[] = node.namedChildren;
    let lo = 0, hi = kids.length - 1;
    node = undefined;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const k: SyntaxNode = kids[mid];
      if (k.endIndex <= index) lo = mid + 1;
      else if (k.startIndex > index) hi = mid - 1;
      else { node = k; break; }
    }
  }
  return chain;
}
