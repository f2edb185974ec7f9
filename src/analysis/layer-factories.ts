// The layer classes project factories give, for the analysis of __init__: memoised, since one
// factory serves many attributes (see layer-factory.ts for how a factory is run).
import type { Expr } from '../dsl/ir.js';
import { chosenClass, factoryClasses, type Val } from './layer-factory.js';
import { sequentialArgs, type ClassChooser } from './layer-class.js';
import type { Resolved, Resolver } from './resolve.js';

export class LayerFactories {
  private chosen = new Map<string, string | undefined>();
  private built = new Map<string, string | undefined>();
  constructor(private readonly resolver: Resolver) {}

  /** The class a factory returns when its arguments take these default classes. */
  readonly chooser: ClassChooser = (callee, args, kw) => {
    if (!this.isFunction(callee)) return undefined;
    const key = JSON.stringify([callee, args, kw]);
    if (!this.chosen.has(key)) {
      const val = (c: string | undefined): Val | undefined => (c ? { k: 'class', qual: c } : undefined);
      this.chosen.set(key, chosenClass(factoryClasses(this.resolver, this.qualOf(callee), args.map(val), kw.map(([k, c]) => [k, val(c)]), 'class')));
    }
    return this.chosen.get(key);
  };

  /** The class of the module a factory call builds (`create_conv2d(...)` → torch.nn.Conv2d),
   *  whatever its arguments. */
  builds(callee: string, positional: number, keywords: string[]): string | undefined {
    if (!this.isFunction(callee)) return undefined;
    // the arguments' values are not known here: each one given is unknown, a `**` splat may add any
    const key = JSON.stringify([callee, positional, keywords]);
    if (!this.built.has(key)) {
      const kw: [string, undefined][] = [...keywords.map((k): [string, undefined] => [k, undefined]), ['**', undefined]];
      this.built.set(key, chosenClass(factoryClasses(this.resolver, this.qualOf(callee), Array(positional).fill(undefined), kw, 'inst')));
    }
    return this.built.get(key);
  }

  /** The layers project factories build in a value of __init__, by factory: the value itself
   *  (`self.conv = create_conv2d(...)`) and each element of an nn.Sequential it is
   *  (`nn.Sequential(conv1x1(c, c), nn.BatchNorm2d(c))`, torchvision's downsample), so a pair
   *  inside the Sequential is seen for the classes it holds. */
  buildsIn(value: Expr): [string, string][] {
    if (value.k !== 'call') return [];
    const calls = /(^|\.)Sequential$/.test(value.callee) && !value.kw.length ? sequentialArgs(value.args) : [value];
    const out: [string, string][] = [];
    for (const c of calls) {
      if (c.k !== 'call' || out.some(([callee]) => callee === c.callee)) continue;
      const built = this.builds(c.callee, c.args.length, c.kw.map(([k]) => k));
      if (built) out.push([c.callee, built]);
    }
    return out;
  }

  private isFunction(callee: string): boolean {
    const r = this.function(callee);
    return r?.k === 'function' && !r.def.owner;
  }

  private qualOf(callee: string): string {
    const r = this.function(callee);
    return r?.k === 'function' ? r.def.qual : callee;
  }

  /** `timm.layers.create_conv2d` names both a module and the function the package's __init__
   *  imports from it under the same name; as a callee it is the function. */
  private function(callee: string): Resolved | undefined {
    const r = this.resolver.resolveQual(callee);
    if (r.k !== 'module') return r;
    const cut = callee.lastIndexOf('.');
    const b = cut > 0 ? this.resolver.symbolsOf(callee.slice(0, cut))?.bindings.get(callee.slice(cut + 1)) : undefined;
    return b?.k === 'import' ? this.resolver.resolveQual(b.qual) : b?.k === 'function' ? { k: 'function', def: b.def, qual: b.def.qual } : undefined;
  }
}
