// The forms of current model code the rmsnorm, gated_mlp and rope families take beyond the
// LLaMA spellings: each rule's examples and refuse cases run (rewrite, idempotence, torch
// check), the fixtures written in those styles are found and rewritten where labelled, and
// --why-not says why the unsound variants are left alone.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runRewrite } from '../src/cli/rewrite.js';
import { categoryOf } from '../src/bench/real-score.js';
import { readMarkers } from '../src/bench/labels.js';
import { loadRules } from '../src/match/rule.js';
import { adopt, repoRoot } from './helpers/cli.js';
import { tempProject } from './helpers/ir.js';

const NEW_RULES = ['rmsnorm', 'rmsnorm_fp32_scale', 'gated_mlp_chunk', 'gated_mlp_act', 'rope_complex', 'rope_pairs', 'rope_interleaved', 'dropout_add_layernorm', 'conv_bn_act', 'conv1x1_gelu', 'conv1d_gelu'];

describe('rules for the real-code forms', () => {
  for (const rule of NEW_RULES) {
    it(`${rule}: its examples rewrite as expected and verify in torch, its refuse cases are refused`, () => {
      const r = adopt(['rules', 'test', rule]);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(r.stdout).toMatch(/ 0 failed/);
      expect(r.stdout).not.toMatch(/^FAIL/m);
    }, 300_000);
  }

  it('bench:real counts the variants in their kernel family', () => {
    expect(['rmsnorm_fp32_scale', 'gated_mlp_chunk', 'gated_mlp_act', 'rope_complex', 'rope_pairs', 'conv_bn_act', 'conv1x1_gelu', 'conv1d_gelu'].map(categoryOf))
      .toEqual(['rmsnorm', 'gated_mlp', 'gated_mlp', 'rope', 'rope', 'conv_bn', 'linear_gelu', 'linear_gelu']);
  });
});

describe('fixtures in the style of current model code', () => {
  for (const name of ['llama_reference_style', 'gemma_phi_style', 'opt_style', 'glu_rope_style', 'norm_act_factory', 'layer_lists']) {
    it(`${name}: every labelled site is listed and rewritten, nothing else is listed`, () => {
      const file = join(repoRoot, 'fixtures', 'models', `${name}.py`);
      const labels = { sites: readMarkers(file, readFileSync(file, 'utf8'), new Set(loadRules().map((r) => r.name))).filter((l) => l.kind === 'site') };
      const run = runRewrite([file], { learned: false });
      const overlaps = (a: number[], b: number[]) => a[0] <= b[1] && b[0] <= a[1];
      const claimed = new Set<number>();
      for (const s of run.sites) {
        const i = labels.sites.findIndex((l, k) => !claimed.has(k) && l.rule === s.rule && overlaps(l.lines, s.lines));
        expect(i, `${s.rule} ${s.lines.join('-')} is not labelled`).toBeGreaterThanOrEqual(0);
        claimed.add(i);
        // the softmax inside an attention gives way to it; every other site is rewritten
        if (s.rule !== 'softmax' || !run.sites.some((o) => o.rule === 'attention' && overlaps(o.lines, s.lines))) expect(s.decision, `${s.rule}: ${s.reason}`).toBe('rewritten');
      }
      expect(claimed.size).toBe(labels.sites.length);
    }, 120_000);
  }
});

describe('--why-not on the forms left alone', () => {
  it('an RMSNorm over a constant dim other than the last, and a gate split over channels, say why', () => {
    const dir = tempProject({
      'm.py': `import torch
from torch import nn


class ChannelNorm(nn.Module):
    def __init__(self, channels=8, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels, 1))

    def forward(self, x):
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(1, keepdim=True) + self.eps)
        return (h * self.weight).type_as(x)


class ChannelGLU(nn.Module):
    def __init__(self, dim=8):
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        a, b = self.proj(x).chunk(2, dim=1)
        return torch.sigmoid(a) * b + nn.functional.silu(a) * b
`,
    });
    const r = adopt(['rewrite', join(dir, 'm.py'), '--why-not', '--no-learned']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/m\.py:12:\d*:? ?rmsnorm_fp32_scale: not a site: mean at line 13 is over dim=1, not the last dimension \(-1\)/);
    expect(r.stderr).toMatch(/m\.py:23:\d+: gated_mlp_chunk: not a site: the split at line 23 is not chunk\(2, dim=-1\)/);
  }, 120_000);
});
