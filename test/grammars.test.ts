import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { grammarPath, grammars, grammarsFrom, recipe } from '../src/dsl/grammars.js';

const text = (name: string) => readFileSync(grammarPath(name), 'utf8');

describe('compiled grammars (grammar/compiled.json)', () => {
  it('are current: made from the grammar texts as they are (run `npm run grammars` after editing one)', () => {
    expect(grammars().fromRecipe).toBe(true);
  });

  it('load to the grammar the texts compile to', () => {
    const fromTexts = grammarsFrom(text('dsl.ohm'), text('rules.ohm'), undefined);
    expect(fromTexts.fromRecipe).toBe(false);
    expect(recipe(grammars().rules)).toEqual(recipe(fromTexts.rules));
    expect(grammars().dsl.name).toBe('AdoptDSL');
  });

  it('are not used for an edited grammar: the edited text is compiled and parses what it says', () => {
    const compiled = text('compiled.json');
    const edited = text('rules.ohm').replace('kw<"rule">', 'kw<"regle">');
    expect(edited).not.toBe(text('rules.ohm'));
    const g = grammarsFrom(text('dsl.ohm'), edited, compiled);
    expect(g.fromRecipe).toBe(false);
    expect(JSON.stringify(recipe(g.rules))).toContain('regle');
    expect(JSON.stringify(recipe(grammars().rules))).not.toContain('regle');
  });

  it('fall back to the texts when the compiled file is missing or unreadable', () => {
    expect(grammarsFrom(text('dsl.ohm'), text('rules.ohm'), undefined).fromRecipe).toBe(false);
    expect(grammarsFrom(text('dsl.ohm'), text('rules.ohm'), '{not json').fromRecipe).toBe(false);
  });
});
