// Module-level names of one file: imports (as qualified names), classes, functions, and values.
import { sameNode, type ParsedFile, type SyntaxNode } from '../parse/python.js';

export interface FuncDef {
  name: string;
  qual: string;
  node: SyntaxNode;
  module: string;
  /** The class it is a method of, if any. */
  owner?: ClassDef;
}

export interface ClassDef {
  name: string;
  qual: string;
  node: SyntaxNode;
  module: string;
  baseNodes: SyntaxNode[];
  methods: Map<string, FuncDef>;
}

export type Binding =
  | { k: 'import'; qual: string }
  | { k: 'class'; def: ClassDef }
  | { k: 'function'; def: FuncDef }
  | { k: 'value'; node: SyntaxNode };

export interface FileSymbols {
  module: string;
  isPackage: boolean;
  parsed: ParsedFile;
  bindings: Map<string, Binding>;
  classes: ClassDef[];
  functions: FuncDef[];
  /** Relative or absolute project imports that named a module, for diagnostics: module → node. */
  importNodes: { module: string; node: SyntaxNode }[];
  /** `from M import *`, in file order: the names they bind are known only once M is read
   *  (Project.load binds them). */
  starImports: { module: string; node: SyntaxNode }[];
  /** The strings of a literal `__all__` list or tuple, if the file has one. */
  exports?: string[];
}

export function field(node: SyntaxNode, name: string): SyntaxNode | null {
  return node.childForFieldName(name);
}

export function resolveRelative(module: string, isPackage: boolean, level: number, rest: string): string {
  const parts = module.split('.');
  const pkg = isPackage ? parts : parts.slice(0, -1);
  const base = pkg.slice(0, Math.max(0, pkg.length - (level - 1)));
  return [...base, ...(rest ? [rest] : [])].join('.');
}

export function collectSymbols(parsed: ParsedFile, module: string, isPackage: boolean): FileSymbols {
  const syms: FileSymbols = { module, isPackage, parsed, bindings: new Map(), classes: [], functions: [], importNodes: [], starImports: [] };
  visitBlock(parsed.root, syms);
  return syms;
}

function visitBlock(block: SyntaxNode, syms: FileSymbols): void {
  for (const stmt of block.namedChildren) visitStmt(stmt, syms);
}

function unwrapDecorated(node: SyntaxNode): SyntaxNode {
  return node.type === 'decorated_definition' ? (field(node, 'definition') ?? node) : node;
}

function visitStmt(raw: SyntaxNode, syms: FileSymbols): void {
  const node = unwrapDecorated(raw);
  switch (node.type) {
    case 'import_statement':
      for (const c of node.namedChildren) {
        if (c.type === 'dotted_name') {
          // `import a.b` binds `a`
          const top = c.text.split('.')[0];
          syms.bindings.set(top, { k: 'import', qual: top });
          syms.importNodes.push({ module: c.text, node: c });
        } else if (c.type === 'aliased_import') {
          const name = field(c, 'name')!.text;
          const alias = field(c, 'alias')!.text;
          syms.bindings.set(alias, { k: 'import', qual: name });
          syms.importNodes.push({ module: name, node: c });
        }
      }
      return;
    case 'import_from_statement': {
      const modNode = field(node, 'module_name')!;
      let from: string;
      if (modNode.type === 'relative_import') {
        const prefix = modNode.namedChildren.find((c) => c.type === 'import_prefix');
        const level = prefix ? prefix.text.length : 0;
        const rest = modNode.namedChildren.find((c) => c.type === 'dotted_name')?.text ?? '';
        from = resolveRelative(syms.module, syms.isPackage, level, rest);
      } else from = modNode.text;
      syms.importNodes.push({ module: from, node: modNode });
      for (const c of node.namedChildren) {
        if (sameNode(c, modNode)) continue;
        if (c.type === 'wildcard_import') syms.starImports.push({ module: from, node: modNode });
        if (c.type === 'dotted_name') syms.bindings.set(c.text, { k: 'import', qual: `${from}.${c.text}` });
        else if (c.type === 'aliased_import') {
          syms.bindings.set(field(c, 'alias')!.text, { k: 'import', qual: `${from}.${field(c, 'name')!.text}` });
        }
      }
      return;
    }
    case 'class_definition': {
      const name = field(node, 'name')!.text;
      const sup = field(node, 'superclasses');
      const def: ClassDef = {
        name, qual: `${syms.module}.${name}`, node, module: syms.module,
        baseNodes: sup ? sup.namedChildren.filter((c) => c.type !== 'keyword_argument' && c.type !== 'comment') : [],
        methods: new Map(),
      };
      const body = field(node, 'body');
      for (const m of body?.namedChildren ?? []) {
        const fn = unwrapDecorated(m);
        if (fn.type === 'function_definition') {
          const mname = field(fn, 'name')!.text;
          def.methods.set(mname, { name: mname, qual: `${def.qual}.${mname}`, node: fn, module: syms.module, owner: def });
        }
      }
      syms.classes.push(def);
      syms.bindings.set(name, { k: 'class', def });
      return;
    }
    case 'function_definition': {
      const name = field(node, 'name')!.text;
      const def: FuncDef = { name, qual: `${syms.module}.${name}`, node, module: syms.module };
      syms.functions.push(def);
      syms.bindings.set(name, { k: 'function', def });
      return;
    }
    case 'expression_statement': {
      const a = node.namedChildren[0];
      if (a?.type === 'assignment') {
        const left = field(a, 'left');
        const right = field(a, 'right');
        if (left?.type === 'identifier' && right) syms.bindings.set(left.text, { k: 'value', node: right });
        if (left?.text === '__all__' && right) syms.exports = literalStrings(right);
      }
      return;
    }
    case 'if_statement':
    case 'try_statement':
    case 'with_statement':
      // Conditional imports (`try: import x except ImportError`) bind names too.
      for (const c of node.namedChildren) {
        if (c.type === 'block') visitBlock(c, syms);
        else if (['else_clause', 'elif_clause', 'except_clause', 'finally_clause'].includes(c.type)) {
          for (const b of c.namedChildren) if (b.type === 'block') visitBlock(b, syms);
        }
      }
      return;
    default:
      return;
  }
}

/** The strings of a list or tuple of string literals; undefined for anything computed. */
function literalStrings(node: SyntaxNode): string[] | undefined {
  if (node.type !== 'list' && node.type !== 'tuple') return undefined;
  const out: string[] = [];
  for (const item of node.namedChildren) {
    if (item.type === 'comment') continue;
    const m = item.type === 'string' ? /^(['"])([A-Za-z_][A-Za-z0-9_]*)\1$/.exec(item.text) : null;
    if (!m) return undefined;
    out.push(m[2]);
  }
  return out;
}

/** The name a parameter binds (none for `*` and `/` separators). */
export function paramNames(p: SyntaxNode): string[] {
  switch (p.type) {
    case 'identifier': return [p.text];
    case 'typed_parameter': case 'list_splat_pattern': case 'dictionary_splat_pattern':
      return p.namedChildren.filter((c) => c.type === 'identifier').slice(0, 1).map((c) => c.text);
    case 'default_parameter': case 'typed_default_parameter': return [field(p, 'name')!.text];
    default: return [];
  }
}
