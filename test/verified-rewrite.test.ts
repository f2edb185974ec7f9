import { cpSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { adopt, repoRoot } from './helpers/cli.js';
import { tempProject } from './helpers/ir.js';

const model = `import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, dim=16):
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        h = self.proj(x)
        h = torch.relu(h)
        h = nn.functional.gelu(h)
        return torch.softmax(h, dim=-1)
`;

// three hand-written rules: one exact, one wrong (sigmoid is not relu), one exact but slow: 600
// op dispatches where the original makes one, slower by several times on any machine, however loaded
const exact = 'rule exact_softmax\n  priority 50\n  match\n    y = softmax($x, ...)\n  where\n    last_dim(y)\n  rewrite expr y\n    guard "True"\n    "torch.softmax({x}, -1)"\n';
const wrong = 'rule wrong_relu\n  priority 50\n  match\n    y = relu($x)\n  rewrite expr y\n    guard "True"\n    "torch.sigmoid({x})"\n';
const slow = 'rule slow_gelu\n  priority 50\n  match\n    y = gelu($x)\n  rewrite expr y\n    guard "True"\n    "sum(nn.functional.gelu({x}) for _ in range(300)) / 300"\n';

function project() {
  return tempProject({ 'm.py': model, 'rules/exact.rule': exact, 'rules/wrong.rule': wrong, 'rules/slow.rule': slow });
}

describe('adopt rewrite --verify', () => {
  it('keeps the rule that verifies, withholds the wrong one and the slower one, and says why', () => {
    const dir = project();
    const db = join(dir, 'records.jsonl');
    const r = adopt(['rewrite', '--rules', join(dir, 'rules'), '--no-builtin-rules', join(dir, 'm.py'), '--verify', '--json', '--repeats', '15'], { env: { ADOPT_DB: db } });
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    const decision = (rule: string) => j.sites.find((s: { rule: string }) => s.rule === rule);
    expect(decision('exact_softmax')).toMatchObject({ decision: 'rewritten', reason: 'guarded rewrite, verified in torch' });
    expect(decision('wrong_relu').decision).toBe('skipped');
    expect(decision('wrong_relu').reason).toMatch(/^verification mismatch: Block: (eval|train) output/);
    expect(decision('slow_gelu').decision).toBe('skipped');
    expect(decision('slow_gelu').reason).toMatch(/^measured slower by --verify \(forward x\d+\.\d\d, train x\d+\.\d\d\)/);
    const verdicts = Object.fromEntries(j.verification[0].rules.map((v: { rule: string; verdict: string }) => [v.rule, v.verdict]));
    expect(verdicts).toEqual({ exact_softmax: 'kept', slow_gelu: 'slower', wrong_relu: 'mismatch' });
    expect(j.verification[0].status).toBe('verified');
    // what was measured is kept for later runs
    const records = readFileSync(db, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(records.find((x: { rule: string }) => x.rule === 'slow_gelu')).toMatchObject({ slower: true, file: join(dir, 'm.py') });
  });

  it('a later rewrite leaves out the rule measured slower, unless told to ignore what was learned', () => {
    const dir = project();
    const db = join(dir, 'records.jsonl');
    expect(adopt(['rewrite', '--rules', join(dir, 'rules'), '--no-builtin-rules', join(dir, 'm.py'), '--verify', '--repeats', '15'], { env: { ADOPT_DB: db } }).code).toBe(0);
    const later = adopt(['rewrite', '--rules', join(dir, 'rules'), '--no-builtin-rules', join(dir, 'm.py'), '--json'], { env: { ADOPT_DB: db } });
    const sites = JSON.parse(later.stdout).sites;
    expect(sites.find((s: { rule: string }) => s.rule === 'slow_gelu').reason).toMatch(/measured slower here by rewrite --verify/);
    // the wrong rule is not remembered as slower: without --verify it is the user's call
    expect(sites.find((s: { rule: string }) => s.rule === 'wrong_relu').decision).toBe('rewritten');
    const forced = adopt(['rewrite', '--rules', join(dir, 'rules'), '--no-builtin-rules', join(dir, 'm.py'), '--json', '--no-learned'], { env: { ADOPT_DB: db } });
    expect(JSON.parse(forced.stdout).sites.find((s: { rule: string }) => s.rule === 'slow_gelu').decision).toBe('rewritten');
  });

  it('writes only what verified with -o', () => {
    const dir = project();
    const out = join(dir, 'out.py');
    const r = adopt(['rewrite', '--rules', join(dir, 'rules'), '--no-builtin-rules', join(dir, 'm.py'), '--verify', '-o', out, '--repeats', '15'], { env: { ADOPT_DB: join(dir, 'db.jsonl') } });
    expect(r.code, r.stderr).toBe(0);
    const text = readFileSync(out, 'utf8');
    expect(text).toContain('torch.softmax(h, -1)');
    expect(text).toContain('h = torch.relu(h)');
    expect(text).not.toContain('sigmoid');
  });

  it('verifies a helper module of a package through the package files that use it', () => {
    const dir = tempProject({});
    cpSync(join(repoRoot, 'fixtures/models/split_attention'), join(dir, 'split_attention'), { recursive: true });
    // --repeats 0: verified, not timed (a tiny model's timing may keep or drop the rule, which is
    // not what this case is about)
    const r = adopt(['rewrite', join(dir, 'split_attention'), '--verify', '--json', '--repeats', '0'], { env: { ADOPT_DB: join(dir, 'db.jsonl') } });
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    const helper = j.verification.find((v: { file: string }) => v.file.endsWith('attention_utils.py'));
    expect(helper.status).toBe('verified');
    // the helper has no classes: the classes that were run are those of the files importing it.
    // relative_model.py imports it relatively, so its classes run the rewritten copy; absolute_model.py
    // imports `split_attention.attention_utils` by name, the original helper: its classes match only
    // because they never ran the rewrite, and say so
    const classes = helper.classes as { class: string; status: string }[];
    expect(classes.filter((c) => c.class.startsWith('relative_model.py:')).map((c) => c.status)).toEqual(['verified', 'verified', 'verified']);
    expect(classes.filter((c) => c.class.startsWith('absolute_model.py:')).map((c) => c.status)).toEqual(['not_exercised', 'not_exercised', 'not_exercised']);
    const site = j.sites.find((s: { rule: string; file: string }) => s.rule === 'softmax' && s.file.endsWith('attention_utils.py'));
    expect(site).toMatchObject({ decision: 'rewritten', reason: 'guarded rewrite, verified in torch' });
  });

  it('--repeats and --config without --verify are usage errors', () => {
    const dir = project();
    expect(adopt(['rewrite', join(dir, 'm.py'), '--repeats', '3']).code).toBe(2);
    expect(adopt(['rewrite', join(dir, 'm.py'), '--verify', '--repeats', 'many']).code).toBe(2);
  });
});

const lm = `import torch
from torch import nn
import torch.nn.functional as F


class Attention(nn.Module):
    def __init__(self, dim=16):
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        att = torch.softmax(q @ k.transpose(-2, -1) * q.size(-1) ** -0.5, dim=-1)
        return att @ v


class TinyLM(nn.Module):
    def __init__(self, vocab=64, dim=16):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.attn = Attention(dim)
        self.lm_head = nn.Linear(dim, vocab, bias=False)

    def forward(self, idx, targets=None):
        x = self.attn(self.emb(idx))
        if targets is not None:
            logits = self.lm_head(x)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        else:
            logits = self.lm_head(x[:, [-1], :])
            loss = None
        return logits, loss


def train(model, steps=2):
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
    for _ in range(steps):
        idx = torch.randint(0, 64, (2, 8))
        _, loss = model(idx, torch.roll(idx, -1, dims=1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
`;

describe('rewrite --verify: what was checked', () => {
  const run = (dir: string, ...args: string[]) => adopt(['rewrite', join(dir, 'lm.py'), '--verify', '--repeats', '0', '--json', ...args], { env: { ADOPT_DB: join(dir, 'db.jsonl') } });

  it('feeds targets to the loss, runs the compiled kernels in float32, and keeps the softmax inside the attention rewrite for the overlap', () => {
    const dir = tempProject({ 'lm.py': lm });
    const r = run(dir, '--rules', 'lm_head_ce,attention,softmax');
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    const verdicts = Object.fromEntries(j.verification[0].rules.map((v: { rule: string; verdict: string }) => [v.rule, v.verdict]));
    expect(verdicts).toEqual({ attention: 'kept', lm_head_ce: 'kept' });
    const lmClass = j.verification[0].classes.find((c: { class: string }) => c.class === 'TinyLM');
    expect(lmClass).toMatchObject({ status: 'verified', exercised: true, inputs: expect.stringContaining('with targets') });
    expect(lmClass.kernel_pass).toMatchObject({ status: 'verified', dtype: 'fp32' });
    expect(lmClass.compiled_kernels).toHaveProperty('linear_cross_entropy');
    expect(lmClass.compiled_calls).toBeGreaterThan(0);
    // every rule was kept: the softmax is left alone because the attention rewrite covers it
    const softmax = j.sites.find((s: { rule: string }) => s.rule === 'softmax');
    expect(softmax.decision).toBe('skipped');
    expect(softmax.reason).toMatch(/^overlaps the attention rewrite/);
  });

  it('withholds a rewrite no class runs as not exercised, never as verified', () => {
    const dir = tempProject({ 'lm.py': lm });
    const r = run(dir, '--rules', 'fused_optimizer');
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.verification[0].rules).toEqual([expect.objectContaining({ rule: 'fused_optimizer', verdict: 'not_exercised' })]);
    const site = j.sites.find((s: { rule: string }) => s.rule === 'fused_optimizer');
    expect(site.decision).toBe('skipped');
    expect(site.reason).toMatch(/^not verified: its rewritten code never ran in any of the 2 class\(es\)/);
    const text = adopt(['rewrite', join(dir, 'lm.py'), '--verify', '--repeats', '0', '--rules', 'fused_optimizer'], { env: { ADOPT_DB: join(dir, 'db.jsonl') } });
    expect(text.stderr).toMatch(/fused_optimizer: not_exercised: .*; 0\/2 classes verified, 2 not exercised/);
  });

  it('a file whose verification cannot run (a missing package, sys.exit at import) exits 2, names why, and writes nothing', () => {
    const dir = tempProject({ 'missing.py': `import not_a_real_package\n${lm}`, 'exits.py': `${lm}\nimport sys\nsys.exit(3)\n` });
    for (const [file, why] of [['missing.py', /ModuleNotFoundError: No module named 'not_a_real_package'/], ['exits.py', /it calls sys\.exit\(3\) when imported/]] as const) {
      const out = join(dir, `out-${file}`);
      const r = adopt(['rewrite', join(dir, file), '--verify', '--repeats', '0', '--rules', 'attention', '-o', out], { env: { ADOPT_DB: join(dir, 'db.jsonl') } });
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(new RegExp(`adopt: error: .*${file}: verification could not run: cannot import .*${file}: ${why.source}; nothing written for this file`));
      expect(existsSync(out)).toBe(false);
    }
  });
});

describe('adopt verify without --class', () => {
  it('builds every class tiny, finds inputs, and verifies a library rewrite of a BERT-style file', () => {
    const dir = tempProject({});
    const out = join(dir, 'bert_rewritten.py');
    expect(adopt(['rewrite', join(repoRoot, 'fixtures/models/bert_encoder.py'), '-o', out]).code).toBe(0);
    const r = adopt(['verify', join(repoRoot, 'fixtures/models/bert_encoder.py'), out, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.verified).toBe(true);
    const byClass = Object.fromEntries(j.classes.map((c: { class: string }) => [c.class, c]));
    expect(byClass.BertModel).toMatchObject({ status: 'verified', strict_load: true });
    expect(byClass.BertModel.fast_path_calls).toBeGreaterThan(0);
    expect(byClass.BertSelfOutput.status).toBe('verified');
  });

  it('finds a wrong rewrite and names the class and output', () => {
    const dir = tempProject({ 'm.py': model });
    writeFileSync(join(dir, 'bad.py'), model.replace('dim=-1', 'dim=-2'));
    const r = adopt(['verify', join(dir, 'm.py'), join(dir, 'bad.py')]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/Block\s+mismatch\s+eval output 0/);
  });

  it('a class it cannot build is reported as not runnable with the reason', () => {
    const src = 'from torch import nn\n\n\nclass Odd(nn.Module):\n    def __init__(self, widget):\n        super().__init__()\n        self.l = nn.Linear(4, 4)\n\n    def forward(self, x):\n        return self.l(x)\n';
    const dir = tempProject({ 'o.py': src, 'o2.py': src });
    const r = adopt(['verify', join(dir, 'o.py'), join(dir, 'o2.py')]);
    expect(r.code).toBe(2);
    expect(r.stdout).toMatch(/Odd\s+not_runnable\s+cannot build Odd: no value for its parameter 'widget'/);
    const given = adopt(['verify', join(dir, 'o.py'), join(dir, 'o2.py'), '--config', '{"widget": 1}']);
    expect(given.code).toBe(0);
    expect(existsSync(join(dir, 'o.py'))).toBe(true);
  });
});

describe('rewrite --verify without a working Python', () => {
  it('exits 2 and writes nothing, rather than a rewrite nobody checked', () => {
    const dir = project();
    const out = join(dir, 'out.py');
    const r = adopt(['rewrite', '--verify', '--rules', join(dir, 'rules', 'exact.rule'), '--no-builtin-rules', join(dir, 'm.py'), '-o', out], { env: { ADOPT_PYTHON: '/nonexistent/python' } });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--verify needs Python with torch.*Nothing was written/);
    expect(existsSync(out)).toBe(false);
  });
});

describe('rewrite --verify, a rule right at one site and wrong at another', () => {
  // the rule forgets the softmax's dim: right in Rows (dim=-1), wrong in Columns (dim=1)
  const twoClasses = `import torch
from torch import nn


class Rows(nn.Module):
    def __init__(self, d=16):
        super().__init__()
        self.proj = nn.Linear(d, d)

    def forward(self, x):
        return torch.softmax(self.proj(x), dim=-1)


class Columns(nn.Module):
    def __init__(self, d=16):
        super().__init__()
        self.proj = nn.Linear(d, d)

    def forward(self, x):
        return torch.softmax(self.proj(x), dim=1)
`;
  const anyDim = 'rule any_dim_softmax\n  priority 50\n  match\n    y = softmax($x, ...)\n  rewrite expr y\n    guard "True"\n    "torch.softmax({x}, -1)"\n';

  it('keeps the site that verifies alone and withholds the other with its own mismatch', () => {
    const dir = tempProject({ 'm.py': twoClasses, 'r.rule': anyDim });
    const out = join(dir, 'out.py');
    const r = adopt(['rewrite', '--rules', join(dir, 'r.rule'), '--no-builtin-rules', join(dir, 'm.py'), '--verify', '--repeats', '0', '--json', '-o', out], { env: { ADOPT_DB: join(dir, 'db.jsonl') } });
    expect(r.code, r.stderr).toBe(0);
    const sites = JSON.parse(r.stdout).sites as { lines: number[]; decision: string; reason: string }[];
    expect(sites.find((s) => s.lines[0] === 11)).toMatchObject({ decision: 'rewritten', reason: 'guarded rewrite, verified in torch' });
    const wrong = sites.find((s) => s.lines[0] === 20)!;
    expect(wrong.decision).toBe('skipped');
    expect(wrong.reason).toMatch(/^verification mismatch: Columns: eval output 0/);
    const text = readFileSync(out, 'utf8');
    expect(text).toContain('return (torch.softmax(self.proj(x), -1) if True else torch.softmax(self.proj(x), dim=-1))');
    expect(text).toContain('return torch.softmax(self.proj(x), dim=1)');
  });
});

describe('adopt rewrite --verify on a rule whose kernel is compiled', () => {
  // the fused bias + GELU called 300 times over: slower wherever its compiled kernel runs; at the
  // tiny instance's sizes its calls are below the kernel's size floor and run the torch code
  const mlp = 'import torch\nfrom torch import nn\n\n\nclass Mlp(nn.Module):\n    def __init__(self, dim=16):\n        super().__init__()\n        self.fc = nn.Linear(dim, 4 * dim)\n\n    def forward(self, x):\n        h = self.fc(x)\n        return nn.functional.gelu(h)\n';
  const rule = 'rule slow_linear_gelu\n  priority 50\n  match\n    l = Linear($x)\n    a = gelu(l)\n  where\n    bias(l)\n    single_use(l)\n  rewrite stmts\n    guard "_adopt is not None and _adopt.enabled(\'linear_gelu\')"\n    "{a} = sum(_adopt.linear_gelu({x}, {l.module}) for _ in range(300)) / 300"\n  kernel cpu native "adopt_kernels.linear_gelu"\n';
  const run = (env: Record<string, string>) => {
    const dir = tempProject({ 'm.py': mlp, 'r.rule': rule });
    const r = adopt(['rewrite', '--rules', join(dir, 'r.rule'), '--no-builtin-rules', join(dir, 'm.py'), '--verify', '--json', '--repeats', '9'], { env: { ADOPT_DB: join(dir, 'records.jsonl'), ...env } });
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    return { verdict: j.verification[0].rules[0], records: readFileSync(join(dir, 'records.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)) };
  };

  it('timed where none of its calls ran compiled, is not judged on speed, and nothing slower is recorded', () => {
    const { verdict, records } = run({});
    expect(verdict).toMatchObject({ rule: 'slow_linear_gelu', verdict: 'kept' });
    expect(verdict.detail).toMatch(/^speed not judged: at the tiny instance's sizes its compiled kernel is below its size floor/);
    expect(records.map((x: { slower: boolean }) => x.slower)).toEqual([false]);
  });

  it('timed where its compiled kernel ran (ADOPT_CPU_MIN_BYTES=0), is judged: slower', () => {
    const { verdict, records } = run({ ADOPT_CPU_MIN_BYTES: '0' });
    expect(verdict).toMatchObject({ rule: 'slow_linear_gelu', verdict: 'slower' });
    expect(verdict.detail).toBeUndefined();
    expect(records.map((x: { slower: boolean }) => x.slower)).toEqual([true]);
  });
});
