// The matcher's keyed tables and operand equality: the same answers as the string keys and JSON
// text they replace.
import { describe, expect, it } from 'vitest';
import { PlaceTable } from '../../src/match/near-miss-table.js';
import { sameExpr } from '../../src/analysis/lower.js';
import type { Expr } from '../../src/dsl/ir.js';

describe('PlaceTable', () => {
  it('keeps places in first-seen order, the last value set at a place, and answers membership', () => {
    const t = new PlaceTable<string>();
    t.set({ rule: 'r', file: 'a.py', line: 3, col: 1 }, 'first');
    t.set({ rule: 'r', file: 'a.py', line: 1, col: 1 }, 'second');
    t.set({ rule: 's', file: 'a.py', line: 3, col: 1 }, 'other rule');
    t.set({ rule: 'r', file: 'a.py', line: 3, col: 1 }, 'first, again');
    expect(t.values()).toEqual(['first, again', 'second', 'other rule']);
    expect(t.has({ rule: 'r', file: 'a.py', line: 1, col: 1 })).toBe(true);
    expect(t.has({ rule: 'r', file: 'a.py', line: 1, col: 2 })).toBe(false);
    expect(t.has({ rule: 'r', file: 'b.py', line: 1, col: 1 })).toBe(false);
    expect(t.has({ rule: 'q', file: 'a.py', line: 1, col: 1 })).toBe(false);
  });

  it('tells places apart that one string key would not (a site without ops)', () => {
    const t = new PlaceTable<boolean>();
    t.set({ rule: 'r', file: 'a.py', line: undefined, col: undefined }, true);
    expect(t.has({ rule: 'r', file: 'a.py', line: undefined, col: undefined })).toBe(true);
    expect(t.has({ rule: 'r', file: 'a.py', line: 0, col: 0 })).toBe(false);
    expect(t.values()).toEqual([true]);
  });
});

describe('sameExpr', () => {
  const cases: [Expr, Expr][] = [
    [{ k: 'name', path: 'x' }, { k: 'name', path: 'x' }],
    [{ k: 'name', path: 'x' }, { k: 'name', path: 'y' }],
    [{ k: 'const', v: 1, raw: '1' }, { k: 'const', v: 1 }],
    [{ k: 'const', v: 1, raw: undefined }, { k: 'const', v: 1 }],
    [{ k: 'const', v: NaN }, { k: 'const', v: null }],
    [{ k: 'const', v: -0 }, { k: 'const', v: 0 }],
    [{ k: 'const', v: '1' }, { k: 'const', v: 1 }],
    [{ k: 'tuple', items: [{ k: 'ssa', id: 1 }] }, { k: 'list', items: [{ k: 'ssa', id: 1 }] }],
    [{ k: 'tuple', items: [{ k: 'ssa', id: 1 }] }, { k: 'tuple', items: [{ k: 'ssa', id: 1 }, { k: 'ssa', id: 2 }] }],
    [{ k: 'slice', lo: null, hi: { k: 'ssa', id: 2 }, step: null }, { k: 'slice', lo: null, hi: { k: 'ssa', id: 2 }, step: null }],
    [{ k: 'dict', items: [[{ k: 'const', v: 'a' }, { k: 'ssa', id: 1 }]] }, { k: 'dict', items: [[{ k: 'const', v: 'a' }, { k: 'ssa', id: 3 }]] }],
    // the same fields in another order print another JSON text
    [{ k: 'star', e: { k: 'ssa', id: 1 }, double: false }, { k: 'star', double: false, e: { k: 'ssa', id: 1 } } as Expr],
  ];
  it.each(cases.map((c, i) => [i, ...c] as const))('case %i answers as the JSON texts compare', (_i, a, b) => {
    expect(sameExpr(a, b)).toBe(JSON.stringify(a) === JSON.stringify(b));
  });
  it('holds equal and unequal cases both', () => {
    const answers = cases.map(([a, b]) => sameExpr(a, b));
    expect(answers).toContain(true);
    expect(answers).toContain(false);
  });
});
