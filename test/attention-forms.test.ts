// Attention as current model code writes it: a module-level function returning its weights,
// einsum spellings, in-place scaling, an assert between the statements, and the reasons given
// where the rule does not apply.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { analyzePaths } from '../src/analysis/analyze.js';
import type { Op } from '../src/dsl/ir.js';
import { runRewrite } from '../src/cli/rewrite.js';
import { modelsDir } from './helpers/fixtures.js';
import { methodOf, moduleOf, opsOf, tempProject } from './helpers/ir.js';
import { unwrapped } from './helpers/unwrap.js';

const attentionSites = (path: string) => runRewrite([path], { rules: 'attention', whyNot: true });

/** The ops of one forward of a file of its own. */
function forwardOps(body: string): Op[] {
  const dir = tempProject({ 'm.py': `import torch\nfrom torch import nn, einsum\n\n\nclass M(nn.Module):\n    def forward(self, q, k, v, s):\n${body}` });
  const { program } = analyzePaths([join(dir, 'm.py')]);
  return opsOf(methodOf(moduleOf(program, 'M')).body);
}

describe('einsum as matmul', () => {
  const shape = (ops: Op[]) => ops.filter((o) => o.callee === 'matmul' || o.callee === 'transpose').map((o) => o.callee).join(' ');
  it('reads spaced letters', () => {
    expect(shape(forwardOps("        return einsum('b i d, b j d -> b i j', q, k)\n"))).toBe('transpose matmul');
  });
  it('takes the summed axis first in either operand (channels first)', () => {
    const ops = forwardOps('        return torch.einsum("bct,bcs->bts", q * s, k * s)\n');
    const mm = ops.find((o) => o.callee === 'matmul')!;
    const left = ops.find((o) => mm.args[0].k === 'ssa' && o.id === mm.args[0].id)!;
    expect(left.callee).toBe('transpose');
    expect(mm.args[1]).toMatchObject({ k: 'ssa' });
    expect(ops.find((o) => mm.args[1].k === 'ssa' && o.id === mm.args[1].id)!.callee).toBe('mul');
  });
  it('takes the result rows from the second operand (v times the transposed weights)', () => {
    const ops = forwardOps('        return torch.einsum("bts,bcs->bct", q, v)\n');
    const mm = ops.find((o) => o.callee === 'matmul')!;
    expect(mm.args[0]).toMatchObject({ k: 'name', path: 'v' });
    expect(ops.find((o) => mm.args[1].k === 'ssa' && o.id === mm.args[1].id)!.callee).toBe('transpose');
  });
  it('leaves a contraction that is no matrix product alone', () => {
    expect(shape(forwardOps("        return einsum('b i d, b i d -> b i', q, k)\n"))).toBe('');
  });
});

describe('a module-level attention function that returns its weights (attention_function fixture)', () => {
  const run = attentionSites(join(modelsDir, 'attention_function.py'));
  const text = unwrapped(run.files[0].rewritten);

  it('is rewritten: the fast path runs when no caller asks for the weights, and gives None for them', () => {
    const site = run.sites.find((s) => s.rule === 'attention')!;
    expect(site.decision, site.reason).toBe('rewritten');
    expect(text).toContain('not (kwargs.get("output_attentions") or getattr(getattr(module, "config", None), "output_attentions", False))');
    expect(text).toMatch(/attn_weights = None {2}# adopt: read only when a caller asks for attentions/);
  });
  it('passes the scale defaulted under `if scaling is None` by its name', () => {
    expect(text).toMatch(/_adopt\.attention\([^)]*scale=scaling,/);
  });

  const refused = (callerBody: string, extra = '') => {
    const dir = tempProject({
      'f.py': `import torch\nfrom torch import nn\n\n\ndef attend(module, q, k, v, scaling, **kwargs):\n    w = torch.matmul(q, k.transpose(2, 3)) * scaling\n    w = nn.functional.softmax(w, dim=-1)\n    out = torch.matmul(w, v)\n    return out, w\n\n\nclass A(nn.Module):\n${callerBody}${extra}`,
    });
    const s = attentionSites(join(dir, 'f.py')).sites.find((x) => x.rule === 'attention')!;
    expect(s.decision).toBe('skipped');
    return unwrapped(s.reason);
  };
  it('is refused when a caller keeps its own output_attentions', () => {
    expect(refused('    def forward(self, q, k, v, output_attentions=False, **kwargs):\n        o, w = attend(self, q, k, v, 0.5, **kwargs)\n        return o, w\n'))
      .toMatch(/caller at line 14 takes output_attentions and does not pass it on/);
  });
  it('is refused when a caller uses the weights', () => {
    expect(refused('    def forward(self, q, k, v, **kwargs):\n        o, w = attend(self, q, k, v, 0.5, **kwargs)\n        return o + w.sum()\n'))
      .toMatch(/reads 'w' at line 15 other than by returning it or under output_attentions/);
  });
  it('is refused when the file takes the flag out of the keywords', () => {
    expect(refused('    def forward(self, q, k, v, **kwargs):\n        kwargs.pop("output_attentions", None)\n        return attend(self, q, k, v, 0.5, **kwargs)\n'))
      .toMatch(/takes output_attentions out of the keywords at line 14/);
  });
  const capturing = `import torch\nfrom torch import nn\nfrom .output_capturing import capture_outputs\n\n\ndef attend(module, q, k, v, scaling, **kwargs):\n    w = torch.matmul(q, k.transpose(2, 3)) * scaling\n    w = nn.functional.softmax(w, dim=-1)\n    out = torch.matmul(w, v)\n    return out, w\n\n\nclass A(nn.Module):\n    def forward(self, q, k, v, **kwargs):\n        o, w = attend(self, q, k, v, 0.5, **kwargs)\n        return o, w\n\n\nclass Model(nn.Module):\n    @capture_outputs\n    def forward(self, q, k, v, **kwargs):\n        kwargs.pop("output_attentions", None)\n        return self.attn(q, k, v, **kwargs)[0]\n`;
  it('asks the output collector in a file whose models record outputs with @capture_outputs (transformers 5)', () => {
    const dir = tempProject({ 'f.py': capturing });
    const run = attentionSites(join(dir, 'f.py'));
    const s = run.sites.find((x) => x.rule === 'attention')!;
    expect(s.decision, s.reason).toBe('rewritten');
    expect(unwrapped(run.files[0].rewritten)).toContain('or (_adopt is not None and _adopt.outputs_recorded("attentions")))');
  });
  it('is refused there too for a caller that takes output_attentions and does not pass it on', () => {
    // a direct call with output_attentions=True expects the weights, which the function cannot see
    const dir = tempProject({ 'f.py': capturing.replace('def forward(self, q, k, v, **kwargs):\n        o, w', 'def forward(self, q, k, v, output_attentions=False, **kwargs):\n        o, w') });
    const s = attentionSites(join(dir, 'f.py')).sites.find((x) => x.rule === 'attention')!;
    expect(s.decision).toBe('skipped');
    expect(s.reason).toMatch(/takes output_attentions and does not pass it on \(a caller passing it expects the weights back/);
  });
  it('is allowed for a caller that reads the weights under the flag it passes on', () => {
    const dir = tempProject({
      'f.py': `import torch\nfrom torch import nn\n\n\ndef attend(module, q, k, v, scaling, **kwargs):\n    w = torch.matmul(q, k.transpose(2, 3)) * scaling\n    w = nn.functional.softmax(w, dim=-1)\n    out = torch.matmul(w, v)\n    return out, w\n\n\nclass A(nn.Module):\n    def forward(self, q, k, v, output_attentions=False):\n        o, w = attend(self, q, k, v, 0.5, output_attentions=output_attentions)\n        if output_attentions:\n            return o, w\n        return o\n`,
    });
    const s = attentionSites(join(dir, 'f.py')).sites.find((x) => x.rule === 'attention')!;
    expect(s.decision, s.reason).toBe('rewritten');
  });
});

/** A fixture's attention sites, its rewritten text unwrapped, its lines, and the site that
 *  holds the first line containing a needle. */
function fixtureSites(name: string) {
  const path = join(modelsDir, name);
  const run = attentionSites(path);
  const lines = readFileSync(path, 'utf8').split('\n');
  const siteAt = (needle: string) => {
    const line = lines.findIndex((l) => l.includes(needle)) + 1;
    return run.sites.find((s) => s.rule === 'attention' && s.lines[0] <= line && line <= s.lines[1]);
  };
  return { path, run, text: unwrapped(run.files[0].rewritten), lines, siteAt };
}

describe('einsum, in-place scaling and an assert (attention_forms fixture)', () => {
  const { text, lines, siteAt } = fixtureSites('attention_forms.py');

  it('rewrites each form', () => {
    for (const needle of ["einsum('b i d, b j d -> b i j'", 'einsum("bct,bcs->bts"', 'logits.div_(', 'attn = (q @ k.transpose(-2, -1)).softmax']) {
      expect(siteAt(needle)?.decision, needle).toBe('rewritten');
    }
  });
  it('passes a division in place as its reciprocal', () => {
    expect(text).toContain('scale=1.0 / (math.sqrt(self.head_dim))');
  });
  it('writes the scale-split operands in parentheses before transposing them', () => {
    expect(text).toContain('(q * scale).transpose(-2, -1), (k * scale).transpose(-2, -1), v.transpose(-2, -1)');
  });
  it('keeps the assert on the original path', () => {
    expect(text).toMatch(/else:\n\s+dots = einsum[^\n]*\n\s+assert dots\.shape\[-1\] == n/);
  });
  it('lists soft-capped scores and says the kernel does not take them', () => {
    const site = siteAt('scores = q @ k.transpose');
    const call = lines.findIndex((l) => l.includes('scores = soft_cap(')) + 1;
    expect(site?.decision).toBe('skipped');
    expect(site?.reason).toBe(`the scores are soft-capped (tanh(s / cap) * cap) before the softmax at line ${call}: the kernel does not take it`);
  });
});

describe('a mask through helpers and an f-string einsum (attention_helpers fixture)', () => {
  const { path, run, text, lines, siteAt } = fixtureSites('attention_helpers.py');

  it('rewrites both forms', () => {
    for (const needle of ['attn = q @ k.transpose(-2, -1)', 'sim = einsum(f"b h i d']) expect(siteAt(needle)?.decision, needle).toBe('rewritten');
  });
  it('passes the mask added through `x if m is None else x + m` as the mask', () => {
    expect(text).toMatch(/_adopt\.attention\([^)]*mask=bias,[^)]*mask_added=True/);
  });
  it('runs the helper that reads only the scores\' dtype and device first, on a tensor of that dtype and device', () => {
    expect(text).toContain('bias = additive_bias(n, torch.empty((), dtype=(_adopt.product_dtype(q, k.transpose(-2, -1)) if _adopt is not None else torch.matmul(q[..., :1, :], k.transpose(-2, -1)[..., :, :1]).dtype), device=q.device), attn_mask, is_causal)');
  });
  it('does not when the helper reads more of the scores than their dtype and device', () => {
    const source = readFileSync(path, 'utf8').replace('like.new_full((n, n), float("-inf"))', 'like.new_full((like.shape[-1], n), float("-inf"))');
    const dir = tempProject({ 'h.py': source });
    const s = attentionSites(join(dir, 'h.py')).sites.find((x) => x.rule === 'attention' && x.lines[0] === siteAt('attn = q @ k.transpose(-2, -1)')!.lines[0])!;
    expect(s.decision).toBe('skipped');
    expect(s.reason).toMatch(/lies between the matched statements/);
  });
});
