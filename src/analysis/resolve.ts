// Name resolution across files: a name in a file, or a qualified name, to the definition it
// denotes (a project class or function, a module-level value) or to an external qualified name.
import type { SyntaxNode } from '../parse/python.js';
import type { FileUnit, Project } from './project.js';
import type { ClassDef, FileSymbols, FuncDef } from './symbols.js';

export type Resolved =
  | { k: 'class'; def: ClassDef; qual: string }
  | { k: 'function'; def: FuncDef; qual: string }
  | { k: 'value'; node: SyntaxNode; syms: FileSymbols; qual: string }
  | { k: 'module'; unit: FileUnit; qual: string }
  | { k: 'external'; qual: string };

const MAX_HOPS = 16;

export class Resolver {
  private cache = new Map<string, Resolved>();
  constructor(readonly project: Project) {}

  symbolsOf(module: string): FileSymbols | undefined {
    const unit = this.project.moduleFile(module);
    return unit ? this.project.load(unit) : undefined;
  }

  /** Resolves a bare name as seen from a file's top level. Undefined: not bound there. */
  resolveName(syms: FileSymbols, name: string): Resolved | undefined {
    const b = syms.bindings.get(name);
    if (!b) return undefined;
    switch (b.k) {
      case 'class': return { k: 'class', def: b.def, qual: b.def.qual };
      case 'function': return { k: 'function', def: b.def, qual: b.def.qual };
      case 'value': return { k: 'value', node: b.node, syms, qual: `${syms.module}.${name}` };
      case 'import': return this.resolveQual(b.qual);
    }
  }

  /** Resolves a dotted qualified name, following re-exports through project files. */
  resolveQual(qual: string, hops = 0): Resolved {
    const hit = this.cache.get(qual);
    if (hit) return hit;
    let result: Resolved = { k: 'external', qual };
    if (hops < MAX_HOPS) {
      const parts = qual.split('.');
      for (let n = parts.length; n >= 1; n--) {
        const mod = parts.slice(0, n).join('.');
        const unit = this.project.moduleFile(mod);
        if (!unit) continue;
        if (n === parts.length) { result = { k: 'module', unit, qual }; break; }
        const syms = this.project.load(unit);
        if (!syms) break;
        const name = parts[n];
        const b = syms.bindings.get(name);
        if (!b) {
          // `from pkg import submodule`
          const sub = this.project.moduleFile(`${mod}.${name}`);
          if (sub) result = n + 1 === parts.length ? { k: 'module', unit: sub, qual } : this.resolveQual(qual, hops + 1);
          break;
        }
        let r: Resolved;
        if (b.k === 'import') {
          if (b.qual === qual) break;
          r = this.resolveQual(b.qual, hops + 1);
        } else r = this.resolveName(syms, name)!;
        const rest = parts.slice(n + 1);
        if (rest.length === 0) result = r;
        else if (r.k === 'class') {
          const m = r.def.methods.get(rest[0]);
          result = m && rest.length === 1 ? { k: 'function', def: m, qual: m.qual } : { k: 'external', qual };
        } else if (r.k === 'external' || r.k === 'module') result = this.resolveQual(`${r.qual}.${rest.join('.')}`, hops + 1);
        else result = { k: 'external', qual };
        break;
      }
    }
    this.cache.set(qual, result);
    return result;
  }
}
