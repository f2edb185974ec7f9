import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { analyzePaths } from '../../src/analysis/analyze.js';
import type { Expr, Op } from '../../src/dsl/ir.js';
import { modelsDir } from '../helpers/fixtures.js';
import { methodOf, moduleOf, opsOf, tempProject } from '../helpers/ir.js';

const ssa = (op: Op): Expr => ({ k: 'ssa', id: op.id });
const kw = (op: Op, name: string) => op.kw.find(([k]) => k === name)?.[1];

describe('BERT-style encoder', () => {
  const { program } = analyzePaths([join(modelsDir, 'bert_encoder.py')]);

  it('resolves init constructors through imports, with config provenance', () => {
    const m = moduleOf(program, 'BertSelfOutput');
    const ln = m.attrs.find((a) => a.name === 'LayerNorm')!;
    expect(ln.value).toMatchObject({ k: 'call', callee: 'torch.nn.LayerNorm', kw: [['eps', { k: 'name', path: 'config.layer_norm_eps' }]] });
    expect(m.attrs.find((a) => a.name === 'dense')!.value).toMatchObject({ callee: 'torch.nn.Linear' });
  });

  it('lowers forward to dataflow: dropout -> add residual -> LayerNorm', () => {
    const ops = opsOf(methodOf(moduleOf(program, 'BertSelfOutput')).body);
    const [dense, drop, add, ln] = ops;
    expect(dense).toMatchObject({ kind: 'module', callee: 'self.dense', type: ['torch.nn.Linear'] });
    expect(drop).toMatchObject({ kind: 'module', type: ['torch.nn.Dropout'], args: [ssa(dense)] });
    expect(add).toMatchObject({ kind: 'op', callee: 'add', args: [ssa(drop), { k: 'name', path: 'input_tensor' }] });
    expect(ln).toMatchObject({ kind: 'module', type: ['torch.nn.LayerNorm'], args: [ssa(add)] });
    expect(ln.span.from.line).toBeGreaterThan(drop.span.from.line);
  });

  it('types ACT2FN[config.hidden_act] activations, guarded by the isinstance branch', () => {
    const m = moduleOf(program, 'BertIntermediate');
    const act = m.attrs.filter((a) => a.name === 'intermediate_act_fn');
    expect(act.length).toBe(2);
    expect(act[0].guard?.length).toBe(1);
    const call = opsOf(methodOf(m).body)[1];
    expect(call.type).toEqual(['bert_encoder.ACT2FN[config.hidden_act]']);
  });

  it('inlines self helpers with provenance and canonicalises softmax and transpose', () => {
    const ops = opsOf(methodOf(moduleOf(program, 'BertSelfAttention')).body);
    expect(ops.some((o) => o.via?.[0] === 'bert_encoder.BertSelfAttention.transpose_for_scores')).toBe(true);
    const sm = ops.find((o) => o.callee === 'softmax')!;
    expect(kw(sm, 'dim')).toMatchObject({ k: 'const', v: -1 });
    const t = ops.find((o) => o.callee === 'transpose' && o.args.length === 3 && (o.args[1] as { v?: number }).v === -2);
    expect(t).toBeDefined();
    const mm = ops.find((o) => o.callee === 'matmul' && o.args.some((a) => a.k === 'ssa' && a.id === t!.id));
    expect(mm).toBeDefined();
  });

  it('applies a ModuleList loop body per element type', () => {
    const fwd = methodOf(moduleOf(program, 'BertEncoder'));
    const loop = fwd.body.find((s) => s.k === 'for');
    expect(loop).toMatchObject({ k: 'for', type: ['bert_encoder.BertLayer'] });
    const call = opsOf(fwd.body).find((o) => o.kind === 'module');
    expect(call?.type).toEqual(['bert_encoder.BertLayer']);
    expect(loop && loop.k === 'for' && loop.phis.map((p) => p.v)).toContain('hidden_states');
  });
});

describe('canonical forms', () => {
  const dir = tempProject({
    'm.py': `import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import nn as tnn


class Spellings(nn.Module):
    def __init__(self):
        super().__init__()
        self.sm = tnn.Softmax(dim=-1)

    def forward(self, q, k, v):
        a = F.softmax(q, -1)
        b = torch.softmax(q, dim=-1)
        c = q.softmax(-1)
        d = self.sm(q)
        e = q @ k.transpose(-1, -2)
        f = torch.bmm(q, k.mT)
        g = torch.matmul(q, k.transpose(-2, -1))
        h = torch.einsum("bhqd,bhkd->bhqk", q, k)
        i = torch.einsum("bhqk,bhkd->bhqd", h, v)
        j = q.float()
        l = q.to(torch.float32)
        m = torch.einsum(f"b h i d, b h j d -> b h i j", q, k)
        eq = "b h j d"
        n = torch.einsum(f"b h i d, {eq} -> b h i j", q, k)
        return a, b, c, d, e, f, g, h, i, j, l, m, n
`,
  });
  const { program } = analyzePaths([join(dir, 'm.py')]);
  const ops = opsOf(methodOf(moduleOf(program, 'Spellings')).body);

  it('maps F.softmax, torch.softmax and Tensor.softmax to one op with dim as keyword', () => {
    const sms = ops.filter((o) => o.callee === 'softmax');
    expect(sms.length).toBe(3);
    for (const s of sms) expect(s).toMatchObject({ kind: 'op', args: [{ k: 'name', path: 'q' }], kw: [['dim', { k: 'const', v: -1 }]] });
  });

  it('keeps nn.Softmax as a typed module call', () => {
    expect(ops.find((o) => o.callee === 'self.sm')).toMatchObject({ kind: 'module', type: ['torch.nn.Softmax'] });
  });

  it('maps @, bmm, matmul and batched einsum (also an f-string without placeholders) to matmul; transpose(-1,-2), .mT to transpose(-2,-1)', () => {
    expect(ops.filter((o) => o.callee === 'matmul').length).toBe(6);
    // an f-string with a placeholder is not a known equation
    expect(ops.filter((o) => o.callee === 'einsum').length).toBe(1);
    const ts = ops.filter((o) => o.callee === 'transpose');
    expect(ts.length).toBe(5);
    for (const t of ts) expect(t.args.slice(1)).toMatchObject([{ v: -2 }, { v: -1 }]);
  });

  it('maps .float() and .to(torch.float32) to one cast', () => {
    const casts = ops.filter((o) => o.callee === 'to');
    expect(casts.length).toBe(2);
    for (const c of casts) expect(kw(c, 'dtype')).toEqual({ k: 'name', path: 'torch.float32' });
  });
});

describe('control flow', () => {
  const dir = tempProject({
    'cf.py': `import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.norm = nn.LayerNorm(8)
        self.proj = nn.Linear(8, 8)

    def forward(self, x, output_attentions=False):
        if self.config.pre_norm:
            h = self.norm(x)
        else:
            h = x
        if output_attentions:
            return h, None
        y = self.proj(h)
        return y
`,
  });
  const { program } = analyzePaths([join(dir, 'cf.py')]);
  const fwd = methodOf(moduleOf(program, 'Block'));

  it('keeps branches as guarded paths with phis', () => {
    const first = fwd.body.find((s) => s.k === 'if')!;
    expect(first).toMatchObject({ k: 'if', cond: { k: 'name', path: 'self.config.pre_norm' } });
    expect(first.k === 'if' && first.phis.map((p) => p.v)).toEqual(['h']);
  });

  it('continues after an early return on the other path, and merges the returns', () => {
    const ifs = fwd.body.filter((s) => s.k === 'if');
    const early = ifs[1];
    expect(early.k === 'if' && early.cond).toEqual({ k: 'name', path: 'output_attentions' });
    expect(early.k === 'if' && opsOf(early.else).map((o) => o.callee)).toEqual(['self.proj']);
    expect(early.k === 'if' && early.phis.map((p) => p.v)).toEqual(['return']);
    const ret = fwd.body[fwd.body.length - 1];
    expect(ret.k).toBe('return');
  });
});

describe('multi-file packages', () => {
  const pkg = join(modelsDir, 'split_attention');
  const { program } = analyzePaths([pkg]);

  it('follows a relative import into the helper file and marks spans in that file', () => {
    const rel = program.files.find((f) => f.path.endsWith('relative_model.py'))!;
    const ops = rel.modules.flatMap((m) => m.methods.flatMap((fn) => opsOf(fn.body)));
    const sm = ops.find((o) => o.callee === 'softmax');
    expect(sm?.via?.some((v) => v.startsWith('split_attention.attention_utils.'))).toBe(true);
    expect(sm?.span.file).toMatch(/attention_utils\.py$/);
  });

  it('follows an absolute import of the same helpers', () => {
    const abs = program.files.find((f) => f.path.endsWith('absolute_model.py'))!;
    const ops = abs.modules.flatMap((m) => m.methods.flatMap((fn) => opsOf(fn.body)));
    expect(ops.some((o) => o.callee === 'softmax' && o.via?.includes('split_attention.attention_utils.attend'))).toBe(true);
    expect(abs.diagnostics.filter((d) => d.code === 'import-unresolved')).toEqual([]);
  });

  it('records attributes set by a base class __init__', () => {
    const { program: p } = analyzePaths([join(modelsDir, 'roberta_style.py')]);
    const derived = p.files[0].modules.find((m) => m.bases.some((b) => b.startsWith('roberta_style.')) && m.attrs.some((a) => a.from));
    expect(derived).toBeDefined();
    expect(derived!.attrs.find((a) => a.from)!.from).toMatch(/^roberta_style\./);
  });

  it('says which project imports cannot be resolved, with file:line:col', () => {
    const dir = tempProject({ 'pkg/__init__.py': '', 'pkg/m.py': 'from .missing import helper\nimport torch\n\nclass M(torch.nn.Module):\n    def forward(self, x):\n        return helper(x)\n' });
    const { program: p } = analyzePaths([join(dir, 'pkg', 'm.py')]);
    const d = p.files[0].diagnostics.find((x) => x.code === 'import-unresolved');
    expect(d).toMatchObject({ line: 1, col: 6 });
    expect(d!.message).toMatch(/pkg\.missing/);
    expect(opsOf(methodOf(moduleOf(p, 'M')).body)[0]).toMatchObject({ kind: 'call', callee: 'pkg.missing.helper' });
  });
});

describe('cycles', () => {
  it('cuts mutually recursive helpers and says where', () => {
    const dir = tempProject({
      'rec.py': `import torch\n\ndef ping(x, n):\n    if n == 0:\n        return x\n    return pong(x * 2, n - 1)\n\ndef pong(x, n):\n    return ping(torch.relu(x), n)\n\nclass R(torch.nn.Module):\n    def forward(self, x):\n        return ping(x, 3)\n`,
    });
    const { program } = analyzePaths([join(dir, 'rec.py')]);
    const d = program.files[0].diagnostics.filter((x) => x.code === 'inline-cut');
    expect(d.length).toBeGreaterThan(0);
    expect(d[0].message).toMatch(/recursive call to rec\.ping .*cycle/);
    const ops = opsOf(methodOf(moduleOf(program, 'R')).body);
    expect(ops.some((o) => o.callee === 'relu')).toBe(true);
    expect(ops.some((o) => o.kind === 'call' && o.callee === 'rec.ping')).toBe(true);
  });

  it('resolves through import cycles between files without hanging', () => {
    const dir = tempProject({
      'cyc/__init__.py': '',
      'cyc/a.py': 'import torch\nfrom .b import helper_b\n\ndef helper_a(x):\n    return torch.tanh(x)\n\nclass A(torch.nn.Module):\n    def forward(self, x):\n        return helper_b(x)\n',
      'cyc/b.py': 'import torch\nfrom .a import helper_a\n\ndef helper_b(x):\n    return helper_a(x) * 2\n',
    });
    const { program } = analyzePaths([join(dir, 'cyc')]);
    const ops = opsOf(methodOf(moduleOf(program, 'A')).body);
    expect(ops.map((o) => o.callee)).toEqual(['tanh', 'mul']);
  });
});

describe('syntax errors', () => {
  it('analyses around them and reports each as file:line:col', () => {
    const { program } = analyzePaths([join(modelsDir, 'syntax_error.py')]);
    const f = program.files[0];
    const errs = f.diagnostics.filter((d) => d.code === 'syntax');
    expect(errs.length).toBeGreaterThan(0);
    for (const e of errs) expect(e.file).toMatch(/syntax_error\.py$/);
    expect(f.modules.length).toBeGreaterThan(2);
  });
});

describe('configuration defaults and fused library calls', () => {
  it('records the defaults of an annotated config class that a constructor reads', () => {
    const dir = tempProject({
      'm.py': [
        'from dataclasses import dataclass',
        'from torch import nn',
        '',
        'class BaseConfig:',
        '    def __init__(self, hidden=32, bias=True):',
        '        self.hidden = hidden',
        '        self.bias = bias',
        '',
        '@dataclass',
        'class MLPConfig(BaseConfig):',
        '    bias: bool = False',
        '',
        'class MLP(nn.Module):',
        '    def __init__(self, config: MLPConfig, other):',
        '        super().__init__()',
        '        self.fc = nn.Linear(config.hidden, 4 * config.hidden, bias=config.bias)',
        '        self.out = nn.Linear(other.hidden, other.hidden, bias=other.bias)',
        '',
        '    def forward(self, x):',
        '        return self.out(self.fc(x))',
        '',
      ].join('\n'),
    });
    const { program } = analyzePaths([join(dir, 'm.py')]);
    const m = moduleOf(program, 'MLP');
    const fc = m.attrs.find((a) => a.name === 'fc')!;
    // the dataclass field overrides the base class's __init__ default
    expect(fc.defaults).toEqual([['config.hidden', { k: 'const', v: 32, raw: '32' }], ['config.bias', { k: 'const', v: false }]]);
    // an unannotated parameter has no known class: nothing is assumed
    expect(m.attrs.find((a) => a.name === 'out')!.defaults).toBeUndefined();
  });

  it('lowers baddbmm to the product, its scale and the added input', () => {
    const { program } = analyzePaths([join(modelsDir, 'bloom_style.py')]);
    const ops = opsOf(methodOf(moduleOf(program, 'BloomAttention')).body);
    const at = ops.findIndex((o) => o.callee === 'matmul');
    const [mm, scaled, bias, added] = ops.slice(at, at + 4);
    expect(mm.args.every((a) => a.k === 'ssa')).toBe(true);
    expect(scaled).toMatchObject({ callee: 'mul', args: [ssa(mm), { k: 'name', path: 'self.inv_norm_factor' }] });
    // beta=self.beta is not known to be 1: it scales the added input
    expect(bias).toMatchObject({ callee: 'mul', args: [{ k: 'name', path: 'alibi' }, { k: 'name', path: 'self.beta' }] });
    expect(added).toMatchObject({ callee: 'add', args: [ssa(scaled), ssa(bias)] });
    expect(new Set([mm, scaled, bias, added].map((o) => o.span.start)).size).toBe(1);
    expect(ops.some((o) => o.callee === 'baddbmm')).toBe(false);
  });
});

describe('in-place tensor methods', () => {
  it('rebind the name they change: later reads see the op, not the value before it', () => {
    const dir = tempProject({
      'm.py': [
        'import torch',
        'from torch import nn',
        '',
        'class A(nn.Module):',
        '    def forward(self, q, k, mask):',
        '        scores = torch.matmul(q, k.transpose(-1, -2))',
        '        scores.masked_fill_(mask, -1e9)',
        '        self.cache.clear_()',
        '        return scores.softmax(dim=-1)',
        '',
      ].join('\n'),
    });
    const { program } = analyzePaths([join(dir, 'm.py')]);
    const ops = opsOf(methodOf(moduleOf(program, 'A')).body);
    const fill = ops.find((o) => o.callee === 'masked_fill_')!;
    const sm = ops.find((o) => o.callee === 'softmax')!;
    expect(sm.args[0]).toEqual(ssa(fill));
  });
});

describe('targets read once', () => {
  it('a target that cannot be read says so once, also when another target imports it', () => {
    const dir = tempProject({
      'pkg/__init__.py': '',
      'pkg/a.py': 'import torch\nfrom pkg.b import helper\nclass A(torch.nn.Module):\n    def forward(self, x):\n        return helper(x)\n',
      'pkg/b.py': Buffer.from('def helper(x):\n    return "\xff"\n', 'latin1'),
    });
    const { program } = analyzePaths([join(dir, 'pkg/a.py'), join(dir, 'pkg/b.py')], { root: dir });
    const [a, b] = program.files;
    expect(a.modules.map((m) => m.name)).toEqual(['A']);
    expect(b.diagnostics.filter((d) => d.code === 'encoding')).toHaveLength(1);
    // each read of an unreadable file adds its reason: loaded twice, it would be listed twice
    const { program: again } = analyzePaths([join(dir, 'pkg/b.py'), join(dir, 'pkg/b.py')], { root: dir });
    expect(again.files).toHaveLength(2);
    for (const f of again.files) expect(f.diagnostics.filter((d) => d.code === 'encoding')).toHaveLength(1);
  });
});
