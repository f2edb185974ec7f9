// Large inputs: the synthesis stage's indexes, a diff of more lines than a call takes arguments,
// and files too large for the size limit or for the process's memory, refused with a reason.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { scaleInput } from '../src/bench/scale.js';
import { sourceFromText } from '../src/parse/source.js';
import { unifiedDiff } from '../src/synth/diff.js';
import { EditSet, SiteSpans, type Edit } from '../src/synth/edits.js';
import { namesIn } from '../src/synth/source.js';
import { adopt, looksLikeCrash } from './helpers/cli.js';
import { tempProject } from './helpers/ir.js';

const edit = (start: number, end: number, text = 'x', rule = 'r'): Edit => ({ start, end, text, rule, line: 1 });

describe('synthesis indexes', () => {
  it('EditSet finds the first accepted edit a new one overlaps, on any line it covers', () => {
    const src = sourceFromText('f.py', 'a = 1\nb = 2\nc = 3\nd = 4\n');
    const set = new EditSet(src);
    set.add(edit(6, 17, 'y', 'first')); // lines 2-3
    set.add(edit(18, 23, 'z', 'second')); // line 4
    expect(set.clash(edit(0, 5))).toBeUndefined();
    expect(set.clash(edit(12, 13))?.rule).toBe('first');
    expect(set.clash(edit(16, 20))?.rule).toBe('first');
    expect(set.clash(edit(17, 18))).toBeUndefined();
    // two insertions at one point overlap; an insertion at a replacement's start does not
    set.add(edit(0, 0, 'ins', 'third'));
    expect(set.clash(edit(0, 0))?.rule).toBe('third');
    expect(set.clash(edit(6, 6))).toBeUndefined();
    expect(set.same(edit(18, 23, 'z'))?.rule).toBe('second');
    expect(set.same(edit(18, 23, 'other'))).toBeUndefined();
    expect(set.all.map((e) => e.rule)).toEqual(['first', 'second', 'third']);
  });

  it('SiteSpans says whether another site\'s code lies in a range', () => {
    const spans = new SiteSpans<string>();
    spans.add(10, 20, 'a');
    spans.add(30, 40, 'b');
    spans.add(12, 18, 'c');
    spans.seal();
    expect(spans.holdsOther(0, 25, 'a')).toBe(true); // c
    expect(spans.holdsOther(11, 19, 'c')).toBe(false); // only c itself
    expect(spans.holdsOther(25, 39, 'a')).toBe(false); // b ends past 39
    expect(spans.holdsOther(25, 40, 'a')).toBe(true);
  });

  it('namesIn reads the names of a guard, not those in strings or number tails', () => {
    expect(namesIn(`_adopt is not None and _adopt.enabled('attention') and q.dim() == 4 and x < 1e-5`))
      .toEqual(['_adopt', 'is', 'not', 'None', 'and', '_adopt', 'enabled', 'and', 'q', 'dim', 'and', 'x']);
    expect(namesIn('f"{scores}" and b')).toEqual(['scores', 'b']);
  });
});

describe('a diff of a large generated file', () => {
  it('writes a hunk of hundreds of thousands of lines', () => {
    const lines = Array.from({ length: 150_000 }, (_, i) => `x${i} = ${i}`);
    const original = lines.join('\n') + '\n';
    // every fourth line changed: one hunk covering the whole file
    const edits: Edit[] = [];
    let at = 0;
    lines.forEach((l, i) => { if (i % 4 === 0) edits.push(edit(at, at + l.length, `${l} + 1`)); at += l.length + 1; });
    const diff = unifiedDiff('big.py', original, edits);
    const body = diff.split('\n');
    expect(body[2]).toBe('@@ -1,150000 +1,150000 @@');
    expect(body.filter((l) => l.startsWith('+') && l.endsWith(' + 1'))).toHaveLength(37_500);
  });
});

describe('input size limits', () => {
  it('rewrite takes --max-file-size, and its limit message names an option rewrite accepts', () => {
    const model = 'import torch\nfrom torch import nn\n\n\nclass M(nn.Module):\n    def forward(self, x):\n        return torch.softmax(x, dim=-1)\n';
    const dir = tempProject({ 'm.py': model + '#'.repeat(2 * 1024 * 1024) + '\n' });
    const small = adopt(['rewrite', '--max-file-size', '1', join(dir, 'm.py')]);
    expect(small.code).toBe(2);
    expect(small.stderr).toMatch(/file is 2\.0 MiB, over the 1\.0 MiB limit \(raise it with --max-file-size\)/);
    const raised = adopt(['rewrite', '--max-file-size', '3', join(dir, 'm.py')]);
    expect(raised.code).toBe(0);
    expect(raised.stdout).toMatch(/_adopt\.softmax\(/);
    expect(adopt(['rewrite', '--max-file-size', '-1', join(dir, 'm.py')]).stderr).toMatch(/--max-file-size must be a positive number of MiB, got '-1'/);
  });

  it('a file too large for the memory the process may use: refused with the reason, exit 2, no crash', () => {
    // 96 MiB of heap holds the analysis of about a quarter of a MiB of source
    const dir = tempProject({});
    writeFileSync(join(dir, 'big.py'), scaleInput(1024 * 1024).text);
    for (const args of [['explain', '--max-file-size', '64'], ['rewrite', '--max-file-size', '64']]) {
      const r = adopt([...args, join(dir, 'big.py')], { env: { NODE_OPTIONS: '--max-old-space-size=96' } });
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/big\.py:1:1: error: file is 1\.0 MiB: analysing it needs about 400 MiB of memory, over the \d+ MiB this process may use/);
      expect(looksLikeCrash(r.stderr)).toBe(false);
    }
  });
});
