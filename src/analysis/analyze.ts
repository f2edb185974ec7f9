// The analysis stage's entry point: project files in, architecture DSL (Program) out.
import type { Diagnostic } from '../diag.js';
import type { FileIR, Method, ModuleIR, Program } from '../dsl/ir.js';
import { ClassTable, spanOf } from './classes.js';
import { MethodLowerer } from './lower.js';
import { Project, type FileUnit, type ProjectOptions } from './project.js';
import { Resolver } from './resolve.js';
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
  diagnostics.unshift(...unit.diagnostics, ...unresolvedImports(unit, project));
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
    out.push({ severity: 'warning', code: 'import-unresolved', file: unit.path, line: p.line, col: p.col, message: `cannot resolve import '${node.text}' (module ${module}) under ${project.root}` });
  }
  return out;
}
