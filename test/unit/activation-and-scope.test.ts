// What a rewrite hands over in place of code it removes: an activation with the settings of its
// call (F.gelu with approximate="tanh" is not F.gelu), names that exist where the rewrite runs
// (no `self` in a module-level function), and a fill's dtype read off the product's operands.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runRewrite } from '../../src/cli/rewrite.js';
import { repoRoot } from '../helpers/cli.js';
import { tempProject } from '../helpers/ir.js';

const HEADER = 'import torch\nimport torch.nn.functional as F\nfrom torch import nn\n\n\n';

/** A gated MLP class whose forward is `body` (gate_proj, up_proj, down_proj built). */
const mlp = (body: string) => `${HEADER}class M(nn.Module):
    def __init__(self, d=16, f=40):
        super().__init__()
        self.gate_proj = nn.Linear(d, f, bias=False)
        self.up_proj = nn.Linear(d, f, bias=False)
        self.down_proj = nn.Linear(f, d, bias=False)
        self.drop = nn.Dropout(0.0)

    def forward(self, x, approx="tanh"):
${body}
`;

function rewrite(files: Record<string, string>, opts: { rules?: string } = {}) {
  const dir = tempProject(files);
  const run = runRewrite([join(dir, 'm.py')], opts.rules ? { rules: join(dir, opts.rules), whyNot: true } : { whyNot: true });
  expect(run.files[0].error).toBeUndefined();
  return { text: run.files[0].rewritten, sites: run.sites };
}

const TANH = 'functools.partial(torch.nn.functional.gelu, approximate="tanh")';

describe('an activation handed to a gated kernel keeps the settings of its call', () => {
  it('gated_mlp: GELU with approximate="tanh" is passed with the keyword, and functools is imported', () => {
    const { text, sites } = rewrite({ 'm.py': mlp('        return self.down_proj(F.gelu(self.gate_proj(x), approximate="tanh") * self.up_proj(x))') });
    expect(sites.find((s) => s.rule === 'gated_mlp')?.decision).toBe('rewritten');
    expect(text).toContain(`self.down_proj,\n                ${TANH},\n`);
    // exact GELU would be another function
    expect(text).not.toMatch(/torch\.nn\.functional\.gelu,\n/);
    expect(text).toMatch(/^import functools {2}# adopt\ntry: {2}# adopt/m);
  });

  it('gated_mlp_act (dropout before the down projection) and gated_mlp_chunk carry it too', () => {
    const act = rewrite({ 'm.py': mlp('        h = F.gelu(self.gate_proj(x), approximate="tanh") * self.up_proj(x)\n        return self.down_proj(self.drop(h))') });
    expect(act.sites.find((s) => s.rule === 'gated_mlp_act')?.decision).toBe('rewritten');
    expect(act.text.replace(/\s+/g, ' ')).toContain(`_adopt.gated_act( self.gate_proj(x), self.up_proj(x), ${TANH}, )`);
    const chunk = rewrite({ 'm.py': mlp('        g, u = self.gate_proj(x).chunk(2, dim=-1)\n        return F.gelu(g, approximate="tanh") * u') });
    expect(chunk.sites.find((s) => s.rule === 'gated_mlp_chunk')?.decision).toBe('rewritten');
    expect(chunk.text).toContain(`_adopt.gated_act(g, u, ${TANH})`);
  });

  it('an approximation chosen at run time is passed as the name holding it', () => {
    const { text } = rewrite({ 'm.py': mlp('        return self.down_proj(F.gelu(self.gate_proj(x), approximate=approx) * self.up_proj(x))') });
    expect(text).toContain('functools.partial(torch.nn.functional.gelu, approximate=approx)');
  });

  it('a call without settings passes the function itself, and a module imports nothing more', () => {
    const plain = rewrite({ 'm.py': mlp('        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))') }).text;
    expect(plain).toContain('self.down_proj,\n                torch.nn.functional.silu,\n');
    expect(plain).not.toContain('functools');
    const already = rewrite({ 'm.py': `import functools\n${mlp('        return self.down_proj(F.gelu(self.gate_proj(x), approximate="tanh") * self.up_proj(x))')}` }).text;
    expect(already).toContain(TANH);
    expect(already.match(/import functools/g)).toHaveLength(1);
  });

  it('a file that binds no `torch` (only `torch.nn.functional as F` and `from torch import nn`) gets `import torch`', () => {
    const bare = mlp('        g, u = self.gate_proj(x).chunk(2, dim=-1)\n        return F.silu(g) * u').replace(HEADER, 'import torch.nn.functional as F\nfrom torch import nn\n\n\n');
    const { text, sites } = rewrite({ 'm.py': bare });
    expect(sites.find((s) => s.rule === 'gated_mlp_chunk')?.decision).toBe('rewritten');
    expect(text).toContain('_adopt.gated_act(g, u, torch.nn.functional.silu)');
    expect(text).toMatch(/^import torch {2}# adopt\ntry: {2}# adopt/m);
    // a file that binds it (`import torch.nn` binds `torch` too) gets no second import
    const bound = rewrite({ 'm.py': bare.replace('from torch import nn', 'import torch.nn\nfrom torch import nn') }).text;
    expect(bound).not.toMatch(/^import torch {2}# adopt/m);
  });

  it('a rule whose activation line allows further arguments refuses a call with one it cannot pass on', () => {
    const rule = readFileSync(join(repoRoot, 'rules', 'gated_mlp', 'gated_mlp.rule'), 'utf8')
      .replace('rule gated_mlp', 'rule loose_gated_mlp').replace(/\*SiLU\*\(g\)/, '*SiLU*(g, ...)').replace(/\n {2}example .*/g, '');
    const { text, sites } = rewrite({
      'm.py': mlp('        return self.down_proj(F.gelu(self.gate_proj(x), **self.kw) * self.up_proj(x))').replace("self.drop = nn.Dropout(0.0)", 'self.kw = {"approximate": "tanh"}'),
      'loose.rule': rule,
    }, { rules: 'loose.rule' });
    const site = sites.find((s) => s.rule === 'loose_gated_mlp');
    expect(site?.decision).toBe('skipped');
    expect(site?.reason).toBe("the activation gelu takes further positional arguments, which the kernel's one-argument call would drop");
    expect(text).not.toContain('_adopt.gated_mlp');
  });
});

const FUNCTIONS = `${HEADER}def attend(q, k, v, scale):
    scores = torch.matmul(q, k.transpose(-2, -1)) * scale
    return torch.matmul(scores.softmax(dim=-1), v)


def attend_dropout(q, k, v, p, training):
    probs = F.softmax(torch.matmul(q, k.transpose(-2, -1)), dim=-1)
    return torch.matmul(F.dropout(probs, p=p, training=training), v)


def attend_always_dropping(q, k, v, p):
    probs = F.softmax(torch.matmul(q, k.transpose(-2, -1)), dim=-1)
    return torch.matmul(F.dropout(probs, p), v)
`;

describe('a rewrite in a module-level function reads no self', () => {
  it('attention: training=False without dropout, else the dropout call\'s own flag (True by default)', () => {
    const { text, sites } = rewrite({ 'm.py': FUNCTIONS });
    expect(sites.filter((s) => s.rule === 'attention').map((s) => s.decision)).toEqual(['rewritten', 'rewritten', 'rewritten']);
    expect(text).not.toMatch(/(?<![\w.])self\b/);
    const calls = [...text.matchAll(/_adopt\.attention\(([^)]*)\)/g)].map((m) => m[1].replace(/\s+/g, ' '));
    expect(calls[0]).toMatch(/dropout_p=0\.0, training=False/);
    expect(calls[1]).toMatch(/dropout_p=p, training=training/);
    expect(calls[2]).toMatch(/dropout_p=p, training=True/);
  });

  it('a method keeps reading its own mode', () => {
    const model = `${HEADER}class A(nn.Module):
    def __init__(self):
        super().__init__()
        self.drop = nn.Dropout(0.1)

    def forward(self, q, k, v):
        probs = F.softmax(torch.matmul(q, k.transpose(-2, -1)), dim=-1)
        return torch.matmul(self.drop(probs), v)
`;
    expect(rewrite({ 'm.py': model }).text).toMatch(/dropout_p=self\.drop,\s+training=self\.training/);
  });

  it('dropout_add_layernorm: a functional dropout passes its own flag, which defaults to training', () => {
    const block = (drop: string) => `${HEADER}class Out(nn.Module):
    def __init__(self, d=16):
        super().__init__()
        self.dense = nn.Linear(d, d)
        self.norm = nn.LayerNorm(d)

    def forward(self, h, residual):
        return self.norm(${drop} + residual)
`;
    expect(rewrite({ 'm.py': block('F.dropout(self.dense(h), 0.1)') }).text).toMatch(/_adopt\.dropout_add_layer_norm\(\s*self\.dense\(h\), residual, self\.norm, 0\.1, True\s*\)/);
    expect(rewrite({ 'm.py': block('F.dropout(self.dense(h), 0.1, training=self.training)') }).text).toMatch(/self\.norm, 0\.1, self\.training\s*\)/);
  });

  it('a rule that writes self. in its template is refused in a function, with the reason', () => {
    const rule = 'rule halve_in_training\n  title "x"\n  priority 10\n  match\n    y = div($x, 2)\n  rewrite expr y\n    guard "self.training"\n    "{x} * 0.5"\n';
    const { text, sites } = rewrite({ 'm.py': `${HEADER}def f(x):\n    return torch.relu(x / 2)\n`, 'h.rule': rule }, { rules: 'h.rule' });
    const site = sites.find((s) => s.rule === 'halve_in_training');
    expect(site?.decision).toBe('skipped');
    expect(site?.reason).toBe("the rewrite reads 'self', which function f does not have (not a method)");
    expect(text).not.toContain('x * 0.5');
  });
});

describe('a fill whose dtype is the scores\' is written out on the fast path', () => {
  const kept = (scores: string) => `${HEADER}def attend(q, k, v, scale, mask):
    scores = ${scores}
    scores = torch.where(mask, scores, torch.tensor(-1e4, dtype=scores.dtype))
    return torch.einsum("bhqk,bhkd->bhqd", scores.softmax(dim=-1), v)
`;

  it('einsum scaled by a name: the product\'s dtype read off the operands, promoted by the factor', () => {
    const { text, sites } = rewrite({ 'm.py': kept('torch.einsum("bhqd,bhkd->bhqk", q, k) * scale') });
    expect(sites.find((s) => s.rule === 'attention')?.decision).toBe('rewritten');
    expect(text).toContain('keep_fill=torch.tensor(-1e4, dtype=torch.result_type(torch.empty(0, dtype=_adopt.product_dtype(q, k.transpose(-2, -1))), scale))');
  });

  it('a product scaled by a number keeps its dtype; an einsum that is not one product is not read', () => {
    expect(rewrite({ 'm.py': kept('(q @ k.transpose(-2, -1)) * 0.125') }).text).toContain('keep_fill=torch.tensor(-1e4, dtype=_adopt.product_dtype(q, k.transpose(-2, -1)))');
    // k laid out (b, h, d, s): the einsum is q @ k, no transpose
    expect(rewrite({ 'm.py': kept('torch.einsum("bhqd,bhds->bhqs", q, k) / 8.0') }).text).toContain('dtype=_adopt.product_dtype(q, k))');
    const other = rewrite({ 'm.py': kept('torch.einsum("bhqd,bhkd->bhkq", q, k) * scale') });
    expect(other.text).not.toContain('product_dtype');
  });

  it('a fill under `if mask is not None:` leaves the fast path on the call without a mask', () => {
    const branch = kept('torch.einsum("bhqd,bhkd->bhqk", q, k) * scale').replace('def attend(q, k, v, scale, mask):', 'def attend(q, k, v, scale, mask=None):')
      .replace('    scores = torch.where(', '    if mask is not None:\n        scores = torch.where(');
    const { text, sites } = rewrite({ 'm.py': branch });
    expect(sites.find((s) => s.rule === 'attention')?.decision).toBe('rewritten');
    expect(text).toMatch(/if \(\n\s+not \(mask is not None\)\n/);
    expect(text).not.toContain('product_dtype');
  });
});
