// torch.jit.trace, torch.onnx.export, torch.fx.symbolic_trace and torch.compile record a graph
// instead of running the code. The compiled kernels write through pointers none of them sees (a
// trace of a fused bias + GELU kept the product alone), and FX's proxies cannot answer the
// guards' checks, so while a graph is recorded every guard is False and the original code is
// what gets recorded; run eagerly, the rewrite still takes the compiled kernels.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runRewrite } from '../src/pipeline/index.js';
import { besideOriginal } from './helpers/beside-original.js';
import { tempProject } from './helpers/ir.js';

const MODEL = `import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        self.fc1 = nn.Linear(d, 4 * d)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(4 * d, d)
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        h = self.fc2(self.act(self.fc1(x)))
        h = h.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6)
        return self.weight * h
`;

const CHECK = `
import torch
from adopt_kernels import _dispatch

orig, new = load(ORIGINAL, "orig"), load(REWRITTEN, "rewritten")
torch.manual_seed(0)
a = orig.Block()
b = new.Block()
b.load_state_dict(a.state_dict())
x, y = torch.randn(4, 32, 64), torch.randn(3, 16, 64)
out = {}
with torch.no_grad():
    before = sum(_dispatch.CALLS.values())
    out["eager"] = (b(y) - a(y)).abs().max().item()
    out["eager_compiled_calls"] = sum(_dispatch.CALLS.values()) - before
    traced = torch.jit.trace(b, (x,), check_trace=False)
    out["traced"] = (traced(y) - a(y)).abs().max().item()
gm = torch.fx.symbolic_trace(b)
out["fx"] = (gm(y) - a(y)).abs().max().item()
out["fx_calls_modules"] = sorted(n.target for n in gm.graph.nodes if n.op == "call_module")
print(json.dumps(out))
`;

describe('a rewritten model while torch records a graph', () => {
  it('jit.trace and fx.symbolic_trace record the original code; eagerly the compiled kernels run', () => {
    const dir = tempProject({ 'm.py': MODEL });
    const text = runRewrite([join(dir, 'm.py')], {}).files[0].rewritten;
    expect(text).toMatch(/_adopt\.linear_gelu\(/);
    expect(text).toMatch(/_adopt\.rms_norm\(/);
    writeFileSync(join(dir, 'rw.py'), text);
    const r = besideOriginal<{ eager: number; eager_compiled_calls: number; traced: number; fx: number; fx_calls_modules: string[] }>(
      join(dir, 'm.py'), join(dir, 'rw.py'), CHECK, { env: { ADOPT_CPU_MIN_BYTES: '0' } });
    expect(r.eager).toBeLessThan(1e-5);
    expect(r.eager_compiled_calls).toBeGreaterThan(0);
    // traced on other inputs than it is run on: a graph that lost the bias and GELU is off by O(1)
    expect(r.traced).toBeLessThan(1e-5);
    expect(r.fx).toBeLessThan(1e-5);
    expect(r.fx_calls_modules).toEqual(['act', 'fc1', 'fc2']);
  });
});
