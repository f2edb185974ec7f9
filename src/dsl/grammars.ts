// The two ohm grammars (grammar/dsl.ohm, and grammar/rules.ohm built on it), loaded from the
// compiled form shipped beside them. Compiling a grammar from its text costs about half a second
// on every start of the command line; a compiled recipe loads in milliseconds. The recipe is used
// only while it was made from the grammar texts as they are now (their hash is stored with it);
// otherwise the texts are compiled, so an edited grammar is never read stale, only slower.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { writeAtomically } from '../atomic-write.js';
import { fileURLToPath } from 'node:url';
import * as ohm from 'ohm-js';

export function grammarPath(name: string): string {
  return fileURLToPath(new URL(`../../grammar/${name}`, import.meta.url));
}

const COMPILED = 'compiled.json';

// ohm's recipe functions (what its command-line bundler emits) are left out of its type
// declarations; these are their shapes.
const recipes = ohm as unknown as { makeRecipe(recipe: unknown): ohm.Grammar };
const recipeOf = (g: ohm.Grammar) => (g as unknown as { toRecipe(): string }).toRecipe();

interface Compiled { sha256: string; rules: unknown }

function sourcesHash(dsl: string, rules: string): string {
  return createHash('sha256').update(dsl).update('\0').update(rules).digest('hex');
}

function compileTexts(dsl: string, rules: string): ohm.Grammar {
  return ohm.grammar(rules, ohm.grammars(dsl));
}

export interface Grammars { dsl: ohm.Grammar; rules: ohm.Grammar; fromRecipe: boolean }

/** The grammars from their texts and the compiled file's text (undefined when there is none):
 *  the recipe when it was made from these texts, else the texts compiled. */
export function grammarsFrom(dslText: string, rulesText: string, compiledText: string | undefined): Grammars {
  let rules: ohm.Grammar | undefined;
  try {
    const c = JSON.parse(compiledText ?? 'null') as Compiled | null;
    if (c?.sha256 === sourcesHash(dslText, rulesText)) rules = recipes.makeRecipe(c.rules);
  } catch {
    // unreadable: compile the texts below
  }
  const fromRecipe = !!rules;
  rules ??= compileTexts(dslText, rulesText);
  return { dsl: rules.superGrammar, rules, fromRecipe };
}

let loaded: Grammars | undefined;

/** The rule grammar and the DSL grammar it extends (its super grammar), loaded once. */
export function grammars(): Grammars {
  if (loaded) return loaded;
  let compiled: string | undefined;
  try { compiled = readFileSync(grammarPath(COMPILED), 'utf8'); } catch { compiled = undefined; }
  loaded = grammarsFrom(readFileSync(grammarPath('dsl.ohm'), 'utf8'), readFileSync(grammarPath('rules.ohm'), 'utf8'), compiled);
  return loaded;
}

/** The recipe of a grammar, as the compiled file stores it. */
export function recipe(g: ohm.Grammar): unknown {
  return JSON.parse(recipeOf(g));
}

/** Compiles the grammar texts and writes the recipe the command line loads (scripts/compile-grammars.mjs). */
export function writeCompiledGrammars(): string {
  const dslText = readFileSync(grammarPath('dsl.ohm'), 'utf8');
  const rulesText = readFileSync(grammarPath('rules.ohm'), 'utf8');
  const compiled: Compiled = { sha256: sourcesHash(dslText, rulesText), rules: recipe(compileTexts(dslText, rulesText)) };
  const path = grammarPath(COMPILED);
  // a command reading the file meanwhile sees the old text or the new, never a part
  writeAtomically(path, JSON.stringify(compiled) + '\n');
  return path;
}
