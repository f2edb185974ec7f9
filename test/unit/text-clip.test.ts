// A reason shortened for one line ends at a word and says it was cut.
import { describe, expect, it } from 'vitest';
import { clipWords } from '../../src/text-clip.js';

describe('clipWords', () => {
  it('keeps a short text, cuts a long one at its last word that fits, with an ellipsis', () => {
    expect(clipWords('short', 20)).toBe('short');
    const reason = 'RuntimeError: Expected 4-dimensional input for 4-dimensional weight, but got input of size [2, 7, 128]';
    const cut = clipWords(reason, 60);
    expect(cut.length).toBeLessThanOrEqual(60);
    expect(cut).toBe('RuntimeError: Expected 4-dimensional input for…');
    expect(reason.startsWith(cut.slice(0, -1))).toBe(true);
  });

  it('cuts a single overlong word where it must', () => {
    expect(clipWords('x'.repeat(50), 10)).toBe(`${'x'.repeat(9)}…`);
  });
});
