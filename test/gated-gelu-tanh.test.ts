// A gated MLP whose GELU takes the tanh approximation (Gemma's MLP, T5's gated-GELU block, a
// GEGLU) computes, rewritten, exactly what it computed: in float64, where the kernels hand the
// call back to torch, the outputs and gradients match to rounding, while handing the kernel plain
// F.gelu (the exact GELU) moves them far past that; in float32 the compiled gated kernel runs the
// tanh form and matches too.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runRewrite } from '../src/pipeline/index.js';
import { besideOriginal } from './helpers/beside-original.js';
import { repoRoot } from './helpers/cli.js';

const CASES: [rule: string, cls: string][] = [
  ['gated_mlp', 'TanhGatedMLP'],
  ['gated_mlp', 'ChosenApproximationMLP'],
  ['gated_mlp_act', 'TanhGatedActDense'],
  ['gated_mlp_chunk', 'TanhGEGLU'],
];

type Errors = { out: number; grad: number; exact_gelu: number; compiled: number };
type Compared = { fp64: Errors; fp32: Errors };

const COMPARE = `
import torch
from adopt_kernels import _dispatch

cls, dropped = ARGS
mods = [load(p, f"m{i}") for i, p in enumerate((ORIGINAL, REWRITTEN, dropped))]

def run(mod, dtype, state=None):
    torch.manual_seed(0)
    net = getattr(mod, cls)().to(dtype)
    if state is not None:
        net.load_state_dict(state)
    g = torch.Generator().manual_seed(1)
    # inputs of a few units, where the two GELUs differ by up to 1e-3 of a value
    x = (3 * torch.randn(2, 5, 16, generator=g)).to(dtype).requires_grad_(True)
    y = net(x)
    y.pow(2).sum().backward()
    return net.state_dict(), y.detach(), x.grad

def err(a, b):
    return float((a - b).abs().max() / b.abs().max())

out = {}
for name, dtype in (("fp64", torch.float64), ("fp32", torch.float32)):
    state, y0, g0 = run(mods[0], dtype)
    before = sum(_dispatch.CALLS.values())
    _, y1, g1 = run(mods[1], dtype, state)
    compiled = sum(_dispatch.CALLS.values()) - before
    _, y2, _ = run(mods[2], dtype, state)
    out[name] = {"out": err(y1, y0), "grad": err(g1, g0), "exact_gelu": err(y2, y0), "compiled": compiled}
print(json.dumps(out))
`;

describe('gated MLP with a tanh-approximated GELU', () => {
  it.each(CASES)('%s on %s: the rewrite computes the original function', (rule, cls) => {
    const before = join(repoRoot, 'rules', rule, 'tanh_before.py');
    const run = runRewrite([before], { rules: rule });
    const text = run.files[0].rewritten;
    expect(text).toContain('functools.partial(torch.nn.functional.gelu, approximate=');
    const dir = mkdtempSync(join(tmpdir(), 'adopt-gelu-tanh-'));
    const after = join(dir, 'after.py');
    writeFileSync(after, text);
    // the rewrite as it was when the keyword was dropped: the kernel given the exact GELU
    const dropped = join(dir, 'dropped.py');
    writeFileSync(dropped, text.replace(/functools\.partial\(torch\.nn\.functional\.gelu, approximate=[^)]*\)/g, 'torch.nn.functional.gelu'));
    expect(readFileSync(dropped, 'utf8')).not.toContain('functools.partial');
    const got = besideOriginal<Compared>(before, after, COMPARE, { args: [cls, dropped], env: { ADOPT_CPU_MIN_BYTES: '0' } });
    expect(got.fp64.out).toBeLessThan(1e-12);
    expect(got.fp64.grad).toBeLessThan(1e-12);
    expect(got.fp64.exact_gelu).toBeGreaterThan(1e-5);
    expect(got.fp32.compiled).toBeGreaterThan(0);
    expect(got.fp32.out).toBeLessThan(1e-5);
    expect(got.fp32.grad).toBeLessThan(1e-5);
  }, 240_000);
});
