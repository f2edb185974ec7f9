// Optimizers built where training code builds them, outside the code a model runs: a trainer's
// __init__, a method of the trainer, an nn.Module's own __init__, a factory defined inside a
// function. Each is rewritten by the CLI to the guarded fused optimizer, and the rewritten file
// trains exactly as the original does in torch, through the compiled kernel.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { besideOriginal } from './helpers/beside-original.js';
import { adopt } from './helpers/cli.js';
import { tempProject } from './helpers/ir.js';

const TRAIN = `import torch
from torch import nn


class Probe(nn.Module):
    def __init__(self, d=16, lr=1e-2):
        super().__init__()
        self.linear = nn.Linear(d, 4)
        self.optimizer = torch.optim.Adam(self.linear.parameters(), lr=lr)

    def forward(self, x):
        return self.linear(x)

    def update(self, x):
        loss = self(x).pow(2).mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()


class Trainer:
    def __init__(self, model, lr=1e-2):
        self.model = model
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1)

    def head_optimizer(self):
        return torch.optim.Adam(self.model[-1].parameters(), lr=1e-3)

    def step(self, x):
        loss = self.model(x).pow(2).mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()


def factory(lr):
    def build(params):
        return torch.optim.AdamW(params, lr=lr)

    return build
`;

type Stepped = { max_diff: number; classes: string[]; compiled: number };

const STEP = `
import torch
from torch import nn
from adopt_kernels import _dispatch


def train(module):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    trainer = module.Trainer(model)
    probe = module.Probe()
    built = [trainer.optimizer, trainer.head_optimizer(), probe.optimizer, module.factory(1e-3)(model.parameters())]
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        x = torch.randn(8, 16, generator=g)
        trainer.step(x)
        probe.update(x)
    params = list(model.parameters()) + list(probe.parameters())
    return params, [type(o).__name__ for o in built]

a, _ = train(load(ORIGINAL, "orig"))
before = _dispatch.CALLS["adamw"]
b, classes = train(load(REWRITTEN, "rewritten"))
diff = max(float((p - q).abs().max()) for p, q in zip(a, b))
print(json.dumps({"max_diff": diff, "classes": classes, "compiled": _dispatch.CALLS["adamw"] - before}))
`;

describe('optimizers built in setup code', () => {
  it('are rewritten in a trainer, its method, a module __init__ and a nested factory, and train as torch does', () => {
    const dir = tempProject({ 'train.py': TRAIN });
    const before = join(dir, 'train.py');
    const after = join(dir, 'train_rewritten.py');
    const r = adopt(['rewrite', before, '-o', after, '--json', '--rules', 'fused_optimizer']);
    expect(r.code, r.stderr).toBe(0);
    const sites = JSON.parse(r.stdout).sites.map((s: { owner: string; method: string; decision: string }) => [s.owner, s.method, s.decision]);
    expect(sites).toEqual([
      ['Probe', '__init__', 'rewritten'],
      ['Trainer', '__init__', 'rewritten'],
      ['Trainer', 'head_optimizer', 'rewritten'],
      ['', 'factory.<locals>.build', 'rewritten'],
    ]);
    const text = readFileSync(after, 'utf8');
    expect(text).toContain("        self.optimizer = (_adopt.fused_optimizer_class(torch.optim.AdamW) if _adopt is not None and _adopt.enabled('fused_optimizer') else torch.optim.AdamW)(model.parameters(), lr=lr, weight_decay=0.1)\n");
    // rewriting the rewritten file changes nothing
    writeFileSync(join(dir, 'again.py'), text);
    expect(adopt(['rewrite', join(dir, 'again.py'), '--check', '--rules', 'fused_optimizer']).code).toBe(0);
    const got = besideOriginal<Stepped>(before, after, STEP);
    expect(got.classes).toEqual(['FusedAdamW', 'FusedAdam', 'FusedAdam', 'FusedAdamW']);
    // the trainer's and the probe's steps, three each
    expect(got.compiled).toBeGreaterThanOrEqual(6);
    expect(got.max_diff).toBeLessThan(1e-6);
  });
});
