// The two front ends (native walk, cursor copy) give the same tree on a sample of the HF-199
// files: end-to-end tier, as the corpus is fetched from PyPI on first use.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ensureTransformers, hf199Files } from '../src/bench/corpus.js';
import { frontEndDifferences } from './helpers/front-ends.js';

describe('the two front ends', () => {
  it('give the same tree on a sample of the HF-199 files', () => {
    const files = hf199Files(ensureTransformers()).filter((_, i) => i % 4 === 0);
    expect(files.length).toBeGreaterThan(40);
    for (const f of files) expect(frontEndDifferences(readFileSync(f.file, 'utf8')), f.model).toEqual([]);
  });
});
