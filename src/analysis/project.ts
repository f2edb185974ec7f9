// The set of Python files under analysis and the module namespace that imports resolve in.
// Files given by the user are targets; other files under the root are loaded lazily, only
// when an import is followed into them.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import { AdoptError, type Diagnostic } from '../diag.js';
import { parsePython, type ParsedFile } from '../parse/python.js';
import { DEFAULT_MAX_BYTES, readSource } from '../parse/source.js';
import { collectSymbols, type FileSymbols } from './symbols.js';

export interface FileUnit {
  /** Absolute path. */
  abs: string;
  /** Path as shown to the user (relative to the root). */
  path: string;
  module: string;
  isPackage: boolean;
  parsed?: ParsedFile;
  symbols?: FileSymbols;
  /** Set once a read was tried and failed (the reason is in diagnostics). */
  unreadable?: true;
  diagnostics: Diagnostic[];
}

export interface ProjectOptions { root?: string; maxBytes?: number }

const SKIP_DIRS = new Set(['__pycache__', 'node_modules', '.git', '.venv', 'venv', 'site-packages', '.tox', 'build', 'dist']);

export class Project {
  readonly root: string;
  readonly targets: FileUnit[] = [];
  private byModule = new Map<string, FileUnit | null>();
  private byPath = new Map<string, FileUnit>();
  readonly maxBytes: number;

  private constructor(root: string, maxBytes: number) {
    this.root = root;
    this.maxBytes = maxBytes;
  }

  /** Resolves the user's inputs (files or directories) into target files. Throws AdoptError
   *  when nothing can be analysed at all. */
  static open(inputs: string[], opts: ProjectOptions = {}): Project {
    if (inputs.length === 0) throw new AdoptError('no input: give a Python file or a directory');
    const absInputs = inputs.map((p) => resolve(p));
    // every missing input named at once, so that the command is fixed in one go
    const missing = inputs.filter((_, i) => !existsSync(absInputs[i]));
    if (missing.length) {
      throw new AdoptError(missing.map((m) => `${m}:1:1: error: no such file or directory`).join('\n'),
        missing.map((m) => ({ severity: 'error' as const, code: 'missing', file: m, line: 1, col: 1, message: 'no such file or directory' })));
    }
    const root = resolve(opts.root ?? defaultRoot(absInputs[0]));
    const project = new Project(root, opts.maxBytes ?? DEFAULT_MAX_BYTES);
    for (const p of absInputs) {
      const files = statSync(p).isDirectory() ? findPythonFiles(p) : [p];
      if (statSync(p).isDirectory() && files.length === 0) {
        throw new AdoptError(`${relative(process.cwd(), p) || '.'}: error: no Python files in this directory`);
      }
      for (const f of files) project.targets.push(project.unitFor(f));
    }
    for (const t of project.targets) project.notePackageBase(t);
    return project;
  }

  private unitFor(abs: string): FileUnit {
    let unit = this.byPath.get(abs);
    if (!unit) {
      const { module, isPackage } = moduleNameOf(abs);
      const rel = relative(process.cwd(), abs);
      unit = { abs, path: rel.startsWith('..') ? abs : rel, module, isPackage, diagnostics: [] };
      this.byPath.set(abs, unit);
      if (!this.byModule.has(module)) this.byModule.set(module, unit);
    }
    return unit;
  }

  /** The directory each input's top package lies in, by the package's name: a relative import
   *  names its module from the file's own package, which need not lie under the root that the
   *  first input chose. */
  private packageBases = new Map<string, string>();
  private notePackageBase(unit: FileUnit): void {
    const parts = unit.module.split('.');
    const depth = parts.length - (unit.isPackage ? 0 : 1);
    if (depth === 0) return;
    let base = dirname(unit.abs);
    // a package's directory and a module's both lie `depth` levels below the base
    for (let i = 0; i < depth; i++) base = dirname(base);
    if (!this.packageBases.has(parts[0])) this.packageBases.set(parts[0], base);
  }

  /** The directory that holds the top package of a file in a package. */
  packageBase(unit: FileUnit): string | undefined {
    return this.packageBases.get(unit.module.split('.')[0]);
  }

  /** Reads, parses and indexes a file once. Returns undefined when it cannot be read. */
  load(unit: FileUnit): FileSymbols | undefined {
    if (unit.symbols || unit.parsed || unit.unreadable) return unit.symbols;
    const read = readSource(unit.abs, this.maxBytes);
    if (!read.ok) {
      unit.unreadable = true;
      unit.diagnostics.push({ ...read.diagnostic, file: unit.path });
      return undefined;
    }
    read.source.path = unit.path;
    unit.diagnostics.push(...read.notes.map((d) => ({ ...d, file: unit.path })));
    unit.parsed = parsePython(read.source);
    unit.diagnostics.push(...unit.parsed.diagnostics);
    unit.symbols = collectSymbols(unit.parsed, unit.module, unit.isPackage);
    this.bindStarImports(unit.symbols);
    return unit.symbols;
  }

  /** Binds the names `from M import *` brings in from a project module M: those of M's literal
   *  `__all__`, else M's names that do not start with `_`, as Python does. A name the file binds
   *  itself keeps its own binding wherever the two stand in the file. Modules outside the project
   *  bind nothing here (analysis warns of them: starImportsNotFollowed). */
  private bindStarImports(syms: FileSymbols): void {
    for (const { module } of syms.starImports) {
      const unit = this.moduleFile(module);
      // in a cycle of star imports, the module still being read gives what it has bound so far
      const from = unit && this.load(unit);
      if (!from) continue;
      const names = from.exports ?? [...from.bindings.keys()].filter((n) => !n.startsWith('_'));
      for (const name of names) {
        if (!syms.bindings.has(name)) syms.bindings.set(name, { k: 'import', qual: `${module}.${name}` });
      }
    }
  }

  /** The parsed text of a loaded file, by the path diagnostics and spans use. */
  parsedFile(path: string): ParsedFile | undefined {
    for (const u of this.byPath.values()) if (u.path === path) return u.parsed;
    return undefined;
  }

  /** The project file that defines a dotted module name, if it lies under the root. */
  moduleFile(module: string): FileUnit | undefined {
    const known = this.byModule.get(module);
    if (known !== undefined) return known ?? undefined;
    let found: FileUnit | undefined;
    const parts = module.split('.');
    const own = this.packageBases.get(parts[0]);
    const bases = own && !this.searchBases().includes(own) ? [...this.searchBases(), own] : this.searchBases();
    for (const base of bases) {
      // Most names looked up are attributes in packages outside the root (torch.nn.functional.
      // softmax, one lookup per prefix): no file can lie in a directory that is not there.
      if (!this.dirExists(base, parts, parts.length - 1)) continue;
      const asFile = join(base, ...parts) + '.py';
      const asPkg = join(base, ...parts, '__init__.py');
      const hit = existsSync(asFile) ? asFile : existsSync(asPkg) ? asPkg : undefined;
      if (hit && (isUnder(hit, this.root) || (own !== undefined && isUnder(hit, own)))) { found = this.unitFor(hit); break; }
    }
    this.byModule.set(module, found ?? null);
    return found;
  }

  private dirs = new Map<string, boolean>();
  /** Whether the directory of the first `n` parts under `base` exists, each level checked once. */
  private dirExists(base: string, parts: string[], n: number): boolean {
    if (n === 0) return true;
    const dir = join(base, ...parts.slice(0, n));
    let known = this.dirs.get(dir);
    if (known === undefined) this.dirs.set(dir, (known = this.dirExists(base, parts, n - 1) && existsSync(dir)));
    return known;
  }

  private bases?: string[];
  // Absolute imports resolve against the directory that holds the root's top package, and the root.
  private searchBases(): string[] {
    if (!this.bases) {
      let top = this.root;
      while (existsSync(join(top, '__init__.py'))) top = dirname(top);
      this.bases = [...new Set([top, this.root])];
    }
    return this.bases;
  }
}

function isUnder(path: string, root: string): boolean {
  const r = relative(root, path);
  return !r.startsWith('..') && !r.startsWith(sep);
}

/** A file's root is the top of its package chain, so that relative imports resolve. */
function defaultRoot(abs: string): string {
  let dir = statSync(abs).isDirectory() ? abs : dirname(abs);
  while (existsSync(join(dir, '__init__.py')) && dirname(dir) !== dir) dir = dirname(dir);
  return statSync(abs).isDirectory() && !existsSync(join(abs, '__init__.py')) ? abs : dir;
}

export function moduleNameOf(abs: string): { module: string; isPackage: boolean } {
  const stem = basename(abs).replace(/\.py$/, '');
  const isPackage = stem === '__init__';
  const parts: string[] = isPackage ? [] : [stem];
  let dir = dirname(abs);
  while (existsSync(join(dir, '__init__.py')) && dirname(dir) !== dir) {
    parts.unshift(basename(dir));
    dir = dirname(dir);
  }
  return { module: parts.join('.') || stem, isPackage };
}

export function findPythonFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, depth: number) => {
    if (depth > 40) return;
    let entries;
    try { entries = readdirSync(d, { withFileTypes: true }); } catch { return; }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      if (e.name.startsWith('.')) continue;
      const p = join(d, e.name);
      if (e.isDirectory()) { if (!SKIP_DIRS.has(e.name)) walk(p, depth + 1); }
      else if (e.isFile() && e.name.endsWith('.py')) out.push(p);
    }
  };
  walk(dir, 0);
  return out;
}
