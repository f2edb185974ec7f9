// What the rewrite reads like, and the template accessor registry the rule loader checks.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runRewrite } from '../../src/cli/rewrite.js';
import { parseRules } from '../../src/match/rule.js';
import { ACCESSORS, accessorTable } from '../../src/synth/accessors.js';
import { ifHeader, lineLengthFor, wrapCall } from '../../src/synth/wrap.js';
import { templateAccessorProblems } from '../../src/match/template-accessors.js';
import { tempProject } from '../helpers/ir.js';

const attention = (keyT: string) => `import math

import torch
from torch import nn


class Attn(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, query_states, key_states, value_states):
        scores = torch.matmul(query_states, ${keyT}) * self.scale
        probs = torch.softmax(scores, dim=-1)
        return torch.matmul(probs, value_states)
`;

function rewriteOne(files: Record<string, string>, name: string, rules?: string): string {
  const dir = tempProject(files);
  const run = runRewrite([join(dir, name)], rules ? { rules: join(dir, rules) } : {});
  expect(run.files[0].error).toBeUndefined();
  return run.files[0].rewritten;
}

describe('readable rewrites', () => {
  it('wraps a long guard and kernel call as black would at 88 columns', () => {
    const out = rewriteOne({ 'm.py': attention('key_states.transpose(-1, -2)') }, 'm.py');
    // the guard and the fast path (the original statements keep their lines)
    const lines = out.slice(out.indexOf('        if ('), out.indexOf('        else:')).split('\n');
    expect(Math.max(...lines.map((l) => l.length))).toBeLessThanOrEqual(88);
    expect(out).toContain([
      '        if (',
      '            _adopt is not None',
      "            and _adopt.enabled('attention')",
      '            and _adopt.attention_supported(',
      '                query_states, key_states.transpose(-1, -2), value_states',
      '            )',
      '        ):',
      '            return _adopt.attention(',
      '                query_states,',
      '                key_states,',
    ].join('\n'));
  });

  it('keeps the line length the project configures', () => {
    const files = { 'pyproject.toml': '[tool.black]\nline-length = 119\n', 'pkg/m.py': attention('key_states.transpose(-1, -2)') };
    const dir = tempProject(files);
    expect(lineLengthFor(join(dir, 'pkg', 'm.py'))).toBe(119);
    const out = runRewrite([join(dir, 'pkg', 'm.py')], {}).files[0].rewritten;
    // at 119 columns the kernel's check fits on its line (at 88 its arguments are split off)
    expect(out).toContain('            and _adopt.attention_supported(query_states, key_states.transpose(-1, -2), value_states)\n        ):');
    expect(Math.max(...out.split('\n').map((l) => l.length))).toBeLessThanOrEqual(119);
    expect(Math.max(...out.split('\n').map((l) => l.length))).toBeGreaterThan(88);
  });

  it('wraps a header and a call only when they do not fit', () => {
    expect(ifHeader('    ', ['a', 'b'], 88)).toEqual(['    if a and b:']);
    expect(ifHeader('', ['x' .repeat(50), `y${'z'.repeat(40)} and f(a and b)`], 60)).toEqual(['if (', `    ${'x'.repeat(50)}`, `    and y${'z'.repeat(40)}`, '    and f(a and b)', '):']);
    expect(wrapCall('', 'o = f(a, b)', 88)).toEqual(['o = f(a, b)']);
    expect(wrapCall('', `o = f(${'a'.repeat(30)}, ${'b'.repeat(30)}).transpose(-2, -1)`, 50)).toEqual(['o = f(', `    ${'a'.repeat(30)},`, `    ${'b'.repeat(30)},`, ').transpose(-2, -1)']);
    expect(wrapCall('', `o = f("x, y", g(1, 2), ${'c'.repeat(40)})`, 40)).toEqual(['o = f(', '    "x, y",', '    g(1, 2),', `    ${'c'.repeat(40)},`, ')']);
  });

  it('passes a key the source transposed by (2, 3) untransposed to the kernel', () => {
    const out = rewriteOne({ 'm.py': attention('key_states.transpose(2, 3)') }, 'm.py');
    expect(out).not.toContain('key_states.transpose(2, 3).transpose(-2, -1)');
    expect(out).toMatch(/_adopt\.attention\(\n\s+query_states,\n\s+key_states,\n/);
    // the guard still evaluates the transpose as written
    expect(out).toContain('_adopt.attention_supported(\n                query_states, key_states.transpose(2, 3), value_states\n            )');
  });

  it('a rule without a guard gives the plain replacement and no import block', () => {
    const rule = `rule halve\n  title "x / 2 -> x * 0.5"\n  priority 10\n  match\n    y = div($x, 2)\n  rewrite expr y\n    "{x} * 0.5"\n`;
    const model = 'import torch\nfrom torch import nn\n\n\nclass M(nn.Module):\n    def forward(self, x):\n        return torch.relu(x / 2)\n';
    const out = rewriteOne({ 'm.py': model, 'halve.rule': rule }, 'm.py', 'halve.rule');
    expect(out).toContain('return torch.relu((x * 0.5))');
    expect(out).not.toContain('if True');
    expect(out).not.toContain('import adopt_kernels');
  });
});

describe('template accessors', () => {
  it('one registry, each accessor described and implemented', () => {
    for (const name of ['factor', 'prob', 'train', 'source_args', 'source_callee', 'callable', 'module', 'rank_check', 'absent', 'dim', 'dtype']) expect(ACCESSORS.has(name)).toBe(true);
    for (const row of accessorTable()) {
      expect(row.description.length).toBeGreaterThan(10);
      expect(row.name === 'absent' || !!ACCESSORS.get(row.name)!.read).toBe(true);
    }
  });

  it('the check names an unknown accessor and one read on a metavariable that only ops have', () => {
    const isOp = (n: string) => n === 'y';
    expect(templateAccessorProblems('_adopt.softmax({x}, dim={y.dim}{,y.dtype})', isOp)).toEqual([]);
    expect(templateAccessorProblems('{y.facter} {,kw=y.prob}', isOp)).toEqual([expect.stringMatching(/^\{y\.facter\}: no template accessor 'facter' \(known: factor, /)]);
    expect(templateAccessorProblems('{x.prob} {x.rank_check}', isOp)).toEqual([expect.stringMatching(/^\{x\.prob\}: accessor 'prob' reads a pattern line's op, not a metavariable/)]);
  });

  it('the rule loader rejects a template using an accessor that does not exist, at the rule file and line', () => {
    const dir = tempProject({});
    const text = `rule soft\n  title "softmax"\n  priority 10\n  match\n    y = softmax($x, ...)\n  rewrite expr y\n    guard "_adopt is not None"\n    "_adopt.softmax({x}, dim={y.dimension})"\n`;
    writeFileSync(join(dir, 'soft.rule'), text);
    expect(() => parseRules(text, join(dir, 'soft.rule'))).toThrow(/soft\.rule:6:1: error: rule soft: \{y\.dimension\}: no template accessor 'dimension'/);
  });
});
