// The fused-optimizer rewrite on a constructor whose keywords hide in a ** splat (nanoGPT's
// configure_optimizers passes fused=True on CUDA): the rewrite must add nothing that can clash
// with them, and the rewritten optimizer must step exactly as torch's does, through the compiled
// kernel where it takes the parameters.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { besideOriginal } from './helpers/beside-original.js';
import { adopt } from './helpers/cli.js';

const MODEL = `import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(16, 32)
        self.b = nn.Linear(32, 4)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))

    def configure_optimizers(self, device_type):
        # what a training script picks per device; on CPU an explicit foreach=False
        extra_args = dict(fused=True) if device_type == "cuda" else dict(foreach=False)
        optimizer = torch.optim.AdamW(self.parameters(), lr=1e-2, weight_decay=0.1, **extra_args)
        return optimizer
`;

type Stepped = { max_diff: number; class: string; compiled: number };

const STEP = `
import torch
from adopt_kernels import _dispatch


def train(module):
    torch.manual_seed(0)
    net = module.Net()
    opt = net.configure_optimizers("cpu")
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        x = torch.randn(8, 16, generator=g)
        loss = net(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net, opt

a, _ = train(load(ORIGINAL, "orig"))
before = _dispatch.CALLS["adamw"]
b, opt = train(load(REWRITTEN, "rewritten"))
diff = max(float((p - q).abs().max()) for p, q in zip(a.parameters(), b.parameters()))
print(json.dumps({"max_diff": diff, "class": type(opt).__name__, "compiled": _dispatch.CALLS["adamw"] - before}))
`;

describe('fused optimizer rewrite', () => {
  it('adds nothing to a constructor with a ** splat and steps as torch does', () => {
    const dir = mkdtempSync(join(tmpdir(), 'adopt-optim-'));
    const before = join(dir, 'train.py');
    const after = join(dir, 'train_rewritten.py');
    writeFileSync(before, MODEL);
    const r = adopt(['rewrite', before, '-o', after, '--rules', 'fused_optimizer']);
    expect(r.code, r.stderr).toBe(0);
    const text = readFileSync(after, 'utf8');
    expect(text).toContain("(_adopt.fused_optimizer_class(torch.optim.AdamW) if _adopt is not None and _adopt.enabled('fused_optimizer') else torch.optim.AdamW)(self.parameters(), lr=1e-2, weight_decay=0.1, **extra_args)");
    const got = besideOriginal<Stepped>(before, after, STEP);
    expect(got.class).toBe('FusedAdamW');
    expect(got.compiled).toBeGreaterThanOrEqual(3);
    expect(got.max_diff).toBeLessThan(1e-6);
  });
});
