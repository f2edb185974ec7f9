// The printed diff is what gets written: edits that land on the same line (two expression
// rewrites in one return statement) are all shown, and applying the diff gives the written file.
import { describe, expect, it } from 'vitest';
import { unifiedDiff } from '../../src/synth/diff.js';
import type { Edit } from '../../src/synth/edits.js';

function applyDiff(original: string, diff: string): string {
  const lines = original.split('\n');
  const out: string[] = [];
  let at = 0;
  const body = diff.split('\n').slice(2);
  for (let i = 0; i < body.length; i++) {
    const m = /^@@ -(\d+),(\d+) /.exec(body[i]);
    if (!m) continue;
    const from = Number(m[1]) - 1;
    while (at < from) out.push(lines[at++]);
    for (i++; i < body.length && !body[i].startsWith('@@'); i++) {
      const l = body[i];
      if (l.startsWith('+')) out.push(l.slice(1));
      else if (l.startsWith('-')) at++;
      else if (l.startsWith(' ')) { out.push(lines[at++]); }
    }
    i--;
  }
  while (at < lines.length) out.push(lines[at++]);
  return out.join('\n');
}

function edit(text: string, find: string, replace: string, nth = 0): Edit {
  let start = -1;
  for (let k = 0; k <= nth; k++) start = text.indexOf(find, start + 1);
  return { start, end: start + find.length, text: replace, rule: 'r', line: 1 };
}

describe('unifiedDiff', () => {
  const src = 'def f(h, s):\n    a = 1\n    return log(sm(h)) + log(softmax(h)) + g\n\n\nx = 2\n';
  it('shows every edit of one line, and applying it gives the edited text', () => {
    const edits = [edit(src, 'sm(h)', 'fused_sm(h)'), edit(src, 'log(softmax(h))', 'log_softmax(h)')];
    const written = src.replace('sm(h)', 'fused_sm(h)').replace('log(softmax(h))', 'log_softmax(h)');
    const d = unifiedDiff('m.py', src, edits);
    expect(d).toContain('+    return log(fused_sm(h)) + log_softmax(h) + g');
    expect(d.match(/^\+/gm)).toHaveLength(2); // the +++ header and the one new line
    expect(applyDiff(src, d)).toBe(written);
  });

  it('edits on lines next to each other and whole lines inserted stay apart and apply', () => {
    const edits = [edit(src, 'a = 1', 'a = 10'), edit(src, 'g\n', 'g + a\n'), { start: 0, end: 0, text: 'import os\n', rule: 'import', line: 1 }];
    const written = `import os\n${src.replace('a = 1', 'a = 10').replace('+ g\n', '+ g + a\n')}`;
    expect(applyDiff(src, unifiedDiff('m.py', src, edits))).toBe(written);
  });
});
