// What the source does besides computing values: a tensor changed in place through a view of it
// or by `out=`. A match must not read a value from before such a write as the same value after it.
import { describe, expect, it } from 'vitest';
import { runRewrite } from '../../src/pipeline/index.js';
import { tempProject } from '../helpers/ir.js';

const SILU_RULE = `rule my_silu
  title "x * sigmoid(x) -> silu"
  match
    s = sigmoid($x)
    y = mul($x, s)
  rewrite expr y
    "torch.nn.functional.silu({x})"
  kernel cpu torch "torch.nn.functional.silu"
`;


function rewrite(forward: string, rule: string) {
  const source = `import torch
from torch import nn


class M(nn.Module):
    def forward(self, x, q=None, k=None, d=1.0):
${forward}
`;
  const dir = tempProject({ 'm.py': source, 'my.rule': rule });
  const run = runRewrite([`${dir}/m.py`], { rules: `${dir}/my.rule`, builtinRules: false, whyNot: true });
  return run.files[0]?.rewritten ?? source;
}

describe('writes the dataflow must see', () => {
  it('a plain match is rewritten (the rules work)', () => {
    expect(rewrite('        return x * torch.sigmoid(x)', SILU_RULE)).toMatch(/silu\(x\)/);
  });

  it('an in-place write through a view between the lines: not the same x', () => {
    expect(rewrite(`        s = torch.sigmoid(x)
        v = x.view(-1)
        v.add_(1.0)
        return x * s`, SILU_RULE)).not.toMatch(/silu/);
  });

  it('a write through a view of a view, by item assignment', () => {
    expect(rewrite(`        s = torch.sigmoid(x)
        v = x.transpose(0, 1)[0]
        v[0] = 1.0
        return x * s`, SILU_RULE)).not.toMatch(/silu/);
  });

  it('out=x between the lines: not the same x', () => {
    expect(rewrite(`        s = torch.sigmoid(x)
        torch.add(x, 1.0, out=x)
        return x * s`, SILU_RULE)).not.toMatch(/silu/);
  });

  it('a write to another tensor through its view leaves x alone', () => {
    expect(rewrite(`        y = x + 1
        s = torch.sigmoid(x)
        v = y.view(-1)
        v.add_(1.0)
        return x * s`, SILU_RULE)).toMatch(/silu\(x\)/);
  });

});

const SQUARE_RULE = `rule my_square
  title "c * c of a float32 cast -> torch.square"
  match
    c = to($x, dtype=torch.float32)
    p = mul(c, c)
  where
    single_use(c)
  rewrite expr p
    "torch.square({x}.float())"
  kernel cpu torch "torch.square"
`;

describe('single_use', () => {
  it('one op reading the value twice is one use', () => {
    expect(rewrite('        c = x.to(torch.float32)\n        return c * c', SQUARE_RULE)).toMatch(/torch\.square\(x\.float\(\)\)/);
  });

  it('a second op reading it is another use', () => {
    expect(rewrite('        c = x.to(torch.float32)\n        return c * c + c', SQUARE_RULE)).not.toMatch(/torch\.square/);
  });
});

describe('--why-not on a constant argument', () => {
  it('shows the value found beside the one the rule needs', () => {
    const dir = tempProject({ 'm.py': 'import torch\n\n\ndef f(x):\n    c = x.to(torch.float32)\n    return torch.pow(c, 3)\n', 'my.rule': `rule cube
  title "c ** 2 -> square"
  match
    c = to($x, dtype=torch.float32)
    p = pow(c, 2)
  rewrite expr p
    "torch.square({x}.float())"
  kernel cpu torch "torch.square"
` });
    const run = runRewrite([`${dir}/m.py`], { rules: `${dir}/my.rule`, builtinRules: false, whyNot: true });
    expect(run.nearMisses.map((n) => n.reason).join('\n')).toMatch(/pow: argument 2 is 3 where the rule needs 2/);
  });
});

describe('a pattern spelled as code is written', () => {
  const meanRule = (line: string) => `rule meansq
  title "mean of squares"
  match
    c = to($x, dtype=torch.float32)
    p = pow(c, 2)
    ${line}
  rewrite expr v
    "torch.square({x}.float()).mean(-1, keepdim=True)"
  kernel cpu torch "torch.square"
`;
  const source = '        c = x.to(torch.float32)\n        return torch.pow(c, 2).mean(-1, keepdim=True)';
  it('a dim given by position matches the op the analysis writes with dim=', () => {
    expect(rewrite(source, meanRule('v = mean(p, -1, keepdim=True)'))).toMatch(/torch\.square\(x\.float\(\)\)/);
    expect(rewrite(source, meanRule('v = mean(p, dim=-1, keepdim=True)'))).toMatch(/torch\.square\(x\.float\(\)\)/);
  });

  it('and still checks the value', () => {
    expect(rewrite(source, meanRule('v = mean(p, 1, keepdim=True)'))).not.toMatch(/torch\.square/);
  });
});
