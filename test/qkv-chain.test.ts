// q projected first, k and v in the last clause of an if/elif chain (BERT's self-attention as a
// decoder may use it): the fused projection runs where the chain takes that clause, and every
// other clause (cross-attention, cached keys) still runs the original code. Checked in torch on
// all four paths: outputs and gradients equal, and the fused projection called only on the first.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runRewrite } from '../src/pipeline/index.js';
import { pythonEnv, pythonExecutable } from '../src/verify/python.js';
import { repoRoot } from './helpers/cli.js';

const FIXTURE = join(repoRoot, 'fixtures', 'models', 'bert_decoder_attention.py');

const CHECK = `
import importlib.util, json, sys
import torch
import adopt_kernels

def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m

before, after = load("before", sys.argv[1]), load("after", sys.argv[2])
calls = {"n": 0}
fused = adopt_kernels.fused_qkv
def counted(*a, **k):
    calls["n"] += 1
    return fused(*a, **k)
adopt_kernels.fused_qkv = counted

torch.manual_seed(0)
a = before.DecoderCapableSelfAttention(hidden_size=32, num_attention_heads=4)
b = after.DecoderCapableSelfAttention(hidden_size=32, num_attention_heads=4)
b.load_state_dict(a.state_dict(), strict=True)
x = torch.randn(2, 5, 32)
enc = torch.randn(2, 7, 32)
past = (torch.randn(2, 4, 3, 8), torch.randn(2, 4, 3, 8))
paths = {
    "self": {},
    "cross": {"encoder_hidden_states": enc},
    "cross_cached": {"encoder_hidden_states": enc, "past_key_value": past},
    "self_cached": {"past_key_value": past},
}
out = {}
for name, kw in paths.items():
    n0 = calls["n"]
    res = []
    for m in (a, b):
        m.zero_grad()
        xi = x.clone().requires_grad_(True)
        y, (k, v) = m(xi, **kw)
        (y.square().sum() + k.sum() + v.sum()).backward()
        res.append((y, k, v, xi.grad, [p.grad for p in m.parameters()]))
    (y0, k0, v0, g0, p0), (y1, k1, v1, g1, p1) = res
    def diff(s, t):
        s = torch.zeros(1) if s is None else s
        t = torch.zeros(1) if t is None else t
        return float((s - t).abs().max()) if s.shape == t.shape else float("inf")
    err = max(diff(s, t) for s, t in [(y0, y1), (k0, k1), (v0, v1), (g0, g1)] + list(zip(p0, p1)))
    out[name] = {"max_err": err, "fused_calls": calls["n"] - n0,
                 "same_grads_present": [s is None for s in p0] == [t is None for t in p1]}
print(json.dumps(out))
`;

function runPaths(rewritten: string): Record<string, { max_err: number; fused_calls: number; same_grads_present: boolean }> {
  const dir = mkdtempSync(join(tmpdir(), 'adopt-qkv-chain-'));
  const after = join(dir, 'after.py');
  writeFileSync(after, rewritten);
  const r = spawnSync(pythonExecutable(), ['-c', CHECK, FIXTURE, after], { env: pythonEnv(), encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  // a shape that differs is an infinite error, which JSON cannot hold
  return JSON.parse(r.stdout.trim().split('\n').pop()!.replace(/Infinity/g, '1e308'));
}

describe('q first, k and v in the last clause of an if/elif chain', () => {
  const run = runRewrite([FIXTURE], { rules: 'qkv_fusion' });
  const text = run.files[0].rewritten;

  it('is rewritten with the chain\'s conditions in the guard, and the comment moves with the statement hoisted', () => {
    const rewritten = run.sites.filter((s) => s.rule === 'qkv_fusion' && s.decision === 'rewritten');
    expect(rewritten.map((s) => s.lines)).toEqual([[44, 66]]);
    // the cached-keys clause projects from the same hidden states, but concatenates the cache after
    const cached = run.sites.filter((s) => s.rule === 'qkv_fusion' && s.decision !== 'rewritten');
    expect(cached.map((s) => [s.lines, s.reason])).toEqual([[[44, 61], 'line 62: the branch around the matched code holds statements outside the pattern']]);
    expect(text).toMatch(/# encoder's padding is what the mask must hide\.\n\s+is_cross_attention = encoder_hidden_states is not None\n\s+if \(\n\s+not is_cross_attention\n\s+and past_key_value is None\n\s+and _adopt is not None/);
  });

  it('computes what the original does on every path, fusing only where k and v are projected from the same input', () => {
    const paths = runPaths(text);
    for (const [name, p] of Object.entries(paths)) {
      expect(p.max_err, name).toBeLessThan(1e-5);
      expect(p.same_grads_present, name).toBe(true);
    }
    expect(paths.self.fused_calls).toBe(1);
    expect(paths.cross.fused_calls + paths.cross_cached.fused_calls + paths.self_cached.fused_calls).toBe(0);
  }, 120_000);

  it('negative control: a guard that forgets the chain\'s earlier conditions is caught on the cross-attention and cached paths', () => {
    const broken = text.replace(/\n\s+not is_cross_attention\n\s+and past_key_value is None\n\s+and /, '\n            ');
    expect(broken).not.toBe(text);
    const paths = runPaths(broken);
    expect(paths.cross.max_err).toBeGreaterThan(1e-3);
    expect(paths.self_cached.max_err).toBeGreaterThan(1e-3);
  }, 120_000);
});
