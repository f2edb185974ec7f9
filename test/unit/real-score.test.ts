import { describe, expect, it } from 'vitest';
import { anchorMismatches, rewrittenOrInside, scoreView, type LabelledFile, type ListedSite } from '../../src/bench/real-score.js';

const source = ['def f(q, k, v):', '    s = q @ k.transpose(-1, -2)', '    p = s.softmax(dim=-1)', '    return p @ v', 'x = norm(x)'].join('\n');

function file(sites: LabelledFile['sites']): LabelledFile {
  return { key: 'pkg==1:m.py', path: '/m.py', source, sites };
}

const labels: LabelledFile['sites'] = [
  { category: 'attention', lines: [2, 4], anchor: 's = q @ k' },
  { category: 'softmax', lines: [3, 3], anchor: 's.softmax' },
  { category: 'rmsnorm', lines: [5, 5], anchor: 'norm(x)' },
];

describe('real-code scorer', () => {
  it('matches by category and overlapping lines, in the found and rewritten views', () => {
    const sites: ListedSite[] = [
      { rule: 'attention', file: '/m.py', lines: [2, 4], decision: 'skipped' },
      { rule: 'softmax', file: '/m.py', lines: [3, 3], decision: 'rewritten' },
      { rule: 'softmax', file: '/m.py', lines: [3, 3], decision: 'rewritten' },
      { rule: 'rmsnorm_variance_fp32', file: '/m.py', lines: [5, 5], decision: 'rewritten' },
      { rule: 'conv_bn', file: '/m.py', lines: [1, 1], decision: 'rewritten' },
      { rule: 'softmax', file: '/other.py', lines: [1, 1], decision: 'rewritten' },
    ];
    const found = scoreView([file(labels)], sites, () => true);
    expect(found.total).toMatchObject({ tp: 3, fn: 0, hits: 3, fp: 1 });
    expect(found.extra).toEqual(['pkg==1:m.py:1-1 conv_bn']);
    expect(found.perCategory.rmsnorm.recall).toBe(1);

    const rewritten = scoreView([file(labels)], sites, (s) => s.decision === 'rewritten');
    expect(rewritten.total).toMatchObject({ tp: 2, fn: 1, hits: 2, fp: 1 });
    expect(rewritten.missed).toEqual(['pkg==1:m.py:2-4 attention']);
    expect(rewritten.total.precision).toBeCloseTo(2 / 3);
    expect(rewritten.perCategory.attention.recall).toBe(0);
  });

  it('a softmax inside a rewritten attention site counts as rewritten; one outside it, or inside a skipped one, does not', () => {
    const inside: ListedSite[] = [
      { rule: 'attention', file: '/m.py', lines: [2, 4], decision: 'rewritten' },
      { rule: 'softmax', file: '/m.py', lines: [3, 3], decision: 'skipped' },
    ];
    expect(scoreView([file(labels)], inside, rewrittenOrInside(inside)).perCategory.softmax.recall).toBe(1);
    const skipped: ListedSite[] = [{ ...inside[0], decision: 'skipped' }, inside[1]];
    expect(scoreView([file(labels)], skipped, rewrittenOrInside(skipped)).perCategory.softmax.recall).toBe(0);
    const outside: ListedSite[] = [{ ...inside[0], lines: [4, 4] }, inside[1]];
    expect(scoreView([file(labels)], outside, rewrittenOrInside(outside)).perCategory.softmax.recall).toBe(0);
    const otherFamily: ListedSite[] = [{ ...inside[0], rule: 'qkv_fusion' }, inside[1]];
    expect(scoreView([file(labels)], otherFamily, rewrittenOrInside(otherFamily)).perCategory.softmax.recall).toBe(0);
  });

  it('a site of another category or with disjoint lines does not match', () => {
    const sites: ListedSite[] = [{ rule: 'softmax', file: '/m.py', lines: [4, 5], decision: 'rewritten' }];
    const v = scoreView([file(labels)], sites, () => true);
    expect(v.total).toMatchObject({ tp: 0, fn: 3, hits: 0, fp: 1 });
  });

  it('reports a label whose anchor is not on its first line', () => {
    const shifted = [{ category: 'softmax', lines: [2, 2] as [number, number], anchor: 's.softmax' }, ...labels];
    const m = anchorMismatches([file(shifted)]);
    expect(m).toHaveLength(1);
    expect(m[0]).toMatchObject({ file: 'pkg==1:m.py', line: 2, anchor: 's.softmax', found: 's = q @ k.transpose(-1, -2)' });
    expect(anchorMismatches([file([{ category: 'softmax', lines: [9, 9], anchor: 'x' }])])[0].found).toBe('(past the end of the file)');
    expect(anchorMismatches([file(labels)])).toEqual([]);
  });
});

describe('real-code labels file', () => {
  it('names the package, file and site of a bad label', async () => {
    const { mkdtempSync, writeFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const { readLabels } = await import('../../src/bench/real-labels.js');
    const p = join(mkdtempSync(join(tmpdir(), 'real-labels-')), 'labels.json');
    writeFileSync(p, JSON.stringify({ packages: { 'pkg==1': { 'm.py': { sites: [{ category: 'softmax', lines: [3, 3], anchor: 'x' }, { category: 'softmaxx', lines: [1, 1], anchor: 'x' }] } } } }));
    expect(() => readLabels(p)).toThrow(`${p}: pkg==1 m.py site 2: unknown category 'softmaxx'`);
  });

  it('the shipped labels parse', async () => {
    const { readLabels, labelsPath } = await import('../../src/bench/real-labels.js');
    const doc = readLabels(labelsPath(process.cwd()));
    expect(Object.keys(doc.packages).length).toBeGreaterThanOrEqual(10);
  });
});

describe('real-code corpus pins', () => {
  it('splits name==version and refuses anything else', async () => {
    const { parsePin } = await import('../../src/bench/real-corpus.js');
    expect(parsePin('open_clip_torch==3.3.0')).toEqual({ name: 'open_clip_torch', version: '3.3.0' });
    expect(() => parsePin('timm>=1.0')).toThrow("labels: package key 'timm>=1.0' is not of the form name==version");
  });
});
