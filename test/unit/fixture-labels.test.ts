// Fixture labels are markers in the sources (src/bench/labels.ts): every marker of
// fixtures/models lines up with a site adopt finds, a marker moved off its site is caught, and a
// malformed one is an error naming its file and line.
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { labelledGroups, readMarkers } from '../../src/bench/labels.js';
import { readFixtureLabels, scoreLabels } from '../../src/bench/rewrite.js';
import { loadRules } from '../../src/match/rule.js';
import { modelsDir } from '../helpers/fixtures.js';
import { tempProject } from '../helpers/ir.js';

const rules = loadRules();
const known = new Set(rules.map((r) => r.name));
const scoreDir = (dir: string) => scoreLabels(readFixtureLabels(dir, rules));

/** A copy of one fixture in a directory of its own, its text changed by `edit`. */
function fixtureCopy(name: string, edit: (text: string) => string = (t) => t): { dir: string; file: string } {
  const dir = tempProject({});
  const file = join(dir, name);
  copyFileSync(join(modelsDir, name), file);
  writeFileSync(file, edit(readFileSync(file, 'utf8')));
  return { dir, file };
}

describe('label markers in fixtures/models', () => {
  it('every site marker lines up with a site adopt finds, and every site found has a marker', () => {
    const labelled = readFixtureLabels(modelsDir, rules);
    const siteLabels = labelled.groups.flatMap((g) => g.labels).filter((l) => l.kind === 'site');
    const scores = scoreLabels(labelled);
    expect({ missed: scores.missed, extra: scores.extra }).toEqual({ missed: [], extra: [] });
    expect(scores.tp).toBe(siteLabels.length);
    // every fixture file and the package directory carry labels
    const sources = labelled.groups.map((g) => g.files[0].slice(modelsDir.length + 1));
    expect(sources).toContain('split_attention');
    expect(sources.filter((s) => s.endsWith('.py')).length).toBeGreaterThan(25);
  });

  it('move with the code: lines added above the sites change nothing', () => {
    const { dir } = fixtureCopy('bert_encoder.py', (t) => `# a licence header\n# of two lines\n${t}`);
    const s = scoreDir(dir);
    expect(s).toMatchObject({ fp: 0, fn: 0 });
    expect(s.tp).toBeGreaterThan(0);
  });

  it('a marker moved off its site is caught: the label missed, the site found unlabelled', () => {
    const { dir, file } = fixtureCopy('bert_encoder.py', (t) => {
      const lines = t.split('\n');
      const at = lines.findIndex((l) => l.includes('# site linear_gelu begins'));
      const [code, marks] = [lines[at].slice(0, lines[at].indexOf('  # site')), lines[at].slice(lines[at].indexOf('  # site'))];
      const end = lines[at + 1].indexOf('  # site linear_gelu ends');
      // both markers three lines further down, where no linear_gelu site is
      const moved = [code, lines[at + 1].slice(0, end), lines[at + 2], lines[at + 3] + marks, lines[at + 4] + '  # site linear_gelu ends'];
      lines.splice(at, 5, ...moved);
      return lines.join('\n');
    });
    const s = scoreDir(dir);
    const movedTo = readMarkers(file, readFileSync(file, 'utf8'), known).find((l) => l.rule === 'linear_gelu')!.lines;
    expect(s).toMatchObject({ fp: 1, fn: 1 });
    expect(s.missed).toEqual([expect.stringMatching(new RegExp(`bert_encoder\\.py:${movedTo[0]}-${movedTo[1]} linear_gelu$`))]);
    expect(s.extra).toEqual([expect.stringMatching(new RegExp(`bert_encoder\\.py:${movedTo[0] - 3}-${movedTo[1] - 3} linear_gelu$`))]);
  });
});

describe('reading markers', () => {
  const read = (text: string) => readMarkers('/x/m.py', text, known);

  it('one-line labels, ranges, near misses, and several markers on a line', () => {
    const text = [
      'a = f(x)  # existing comment  # site qkv_fusion begins: three projections',
      'b = g(x)  # site softmax: one line # near miss linear_gelu begins: a ReLU',
      'c = h(x)  # site qkv_fusion ends # near miss linear_gelu ends',
    ].join('\n');
    expect(read(text).map((l) => [l.kind, l.rule, l.lines, l.note])).toEqual([
      ['site', 'qkv_fusion', [1, 3], 'three projections'],
      ['site', 'softmax', [2, 2], 'one line'],
      ['near miss', 'linear_gelu', [2, 3], 'a ReLU'],
    ]);
  });

  it('ranges of one rule close in the order they opened (interleaved sites), an ends is read before a begins on its line', () => {
    const text = [
      'q = rot(q)  # site linear_gelu begins: first',
      'k = rot(k)  # site linear_gelu begins: second',
      'q = out(q)  # site linear_gelu ends',
      'k = out(k)  # site linear_gelu ends # site linear_gelu begins: next',
      'h = last(h)  # site linear_gelu ends',
    ].join('\n');
    expect(read(text).map((l) => [l.lines, l.note])).toEqual([[[1, 3], 'first'], [[2, 4], 'second'], [[4, 5], 'next']]);
  });

  it('an unknown rule, an ends with nothing open, a begins never closed, a misspelt or noted ends: errors at file:line', () => {
    const cases: [string, RegExp][] = [
      ['x = 1\ny = f(x)  # site sofmax: typo', /^\/x\/m\.py:2: label marker names an unknown rule 'sofmax'/],
      ['x = 1  # site softmax ends', /^\/x\/m\.py:1: 'site softmax ends' closes no open range/],
      ['x = 1\ny = 2  # near miss attention begins: never closed\nz = 3', /^\/x\/m\.py:2: 'near miss attention begins' is never closed/],
      ['x = 1  # site softmax begin: misspelt', /^\/x\/m\.py:1: malformed label marker '# site softmax begin: misspelt'/],
      ['x = 1  # site softmax begins: a\ny = 2  # site softmax ends: b', /^\/x\/m\.py:2: 'site softmax ends' takes no note/],
    ];
    for (const [text, message] of cases) expect(() => read(text), text).toThrow(message);
  });

  it('in a directory: the error names the fixture file, and a leftover .labels.json is refused', () => {
    const bad = tempProject({ 'm.py': 'import torch\n\n\ndef f(x):\n    return x.softmax(-1)  # site softmax begins: open\n' });
    expect(() => labelledGroups(bad, known)).toThrow(/m\.py:5: 'site softmax begins' is never closed/);
    const old = tempProject({ 'm.py': 'x = 1\n', 'm.labels.json': '{"sites": []}' });
    expect(() => labelledGroups(old, known)).toThrow(/m\.labels\.json: labels are markers in the sources now/);
    const pkg = tempProject({ 'pkg/a.py': 'x = 1\n', 'pkg/labels.json': '{"sites": []}' });
    expect(() => labelledGroups(pkg, known)).toThrow(/pkg\/labels\.json: labels are markers in the sources now/);
  });
});
