import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { adopt, looksLikeCrash, repoRoot } from './helpers/cli.js';
import { tempProject } from './helpers/ir.js';

const MODEL = 'import torch\nfrom torch import nn\n\n\nclass M(nn.Module):\n    def forward(self, x):\n        return torch.softmax(x, dim=-1)\n';

describe('bad input to adopt explain', () => {
  it('non-UTF-8 bytes: names the byte position and exits 2', () => {
    const dir = tempProject({ 'latin.py': Buffer.from('import torch\nname = "caf\xe9"\n', 'latin1') });
    const r = adopt(['explain', join(dir, 'latin.py')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/latin\.py:2:12: error: invalid UTF-8 byte 0xe9/);
    expect(looksLikeCrash(r.stderr)).toBe(false);
  });

  it('a declared source encoding is honoured', () => {
    const dir = tempProject({ 'declared.py': Buffer.from(`# -*- coding: latin-1 -*-\n# caf\xe9\n${MODEL}`, 'latin1') });
    const r = adopt(['explain', join(dir, 'declared.py')]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/softmax\(x, dim=-1\)/);
  });

  it('a binary file: exits 2 with a diagnostic', () => {
    const dir = tempProject({ 'blob.py': Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0x00, 0x01, 0x02]) });
    const r = adopt(['explain', join(dir, 'blob.py')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/blob\.py:1:5: error: binary file/);
    expect(looksLikeCrash(r.stderr)).toBe(false);
  });

  it('an empty file: says there is nothing to analyse and exits 2', () => {
    const dir = tempProject({ 'empty.py': '' });
    const r = adopt(['explain', join(dir, 'empty.py')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/empty\.py:1:1: note: empty file/);
    expect(r.stderr).toMatch(/nothing to analyse/);
  });

  it('an empty file beside a real one: the real one is analysed, exit 0', () => {
    const dir = tempProject({ 'pkg/empty.py': '', 'pkg/model.py': MODEL });
    const r = adopt(['explain', join(dir, 'pkg')]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/module model\.M/);
  });

  it('a 5 MB generated file: analysed up to the op limit, which is reported', () => {
    let src = 'import torch\nfrom torch import nn\n\n\nclass Big(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.l = nn.Linear(8, 8)\n\n    def forward(self, x):\n';
    const lines: string[] = [];
    let size = src.length;
    for (let i = 0; size < 5 * 1024 * 1024; i++) {
      const line = `        x = self.l(x) + torch.relu(x) * ${i}  # generated layer ${i}\n`;
      lines.push(line);
      size += line.length;
    }
    src += lines.join('') + '        return x\n';
    const dir = tempProject({ 'big.py': src });
    const r = adopt(['explain', join(dir, 'big.py')]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/big\.py:\d+:\d+: warning: more than 20000 ops in one method/);
    expect(looksLikeCrash(r.stderr)).toBe(false);
  });

  it('a file over the size limit: exits 2 and says how to raise the limit', () => {
    const dir = tempProject({ 'm.py': MODEL + '#'.repeat(2 * 1024 * 1024) + '\n' });
    const r = adopt(['explain', '--max-file-size', '1', join(dir, 'm.py')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/m\.py:1:1: error: file is 2\.0 MiB, over the 1\.0 MiB limit \(raise it with --max-file-size\)/);
  });

  it('500-deep expression nesting: kept as text with a warning, the rest analysed', () => {
    const deep = `${'('.repeat(500)}x${')'.repeat(500)}`;
    const dir = tempProject({ 'deep.py': `import torch\nfrom torch import nn\n\n\nclass D(nn.Module):\n    def forward(self, x):\n        y = ${deep}\n        return torch.softmax(y, dim=-1)\n` });
    const r = adopt(['explain', join(dir, 'deep.py')]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/deep\.py:7:\d+: warning: expression nested deeper than 150/);
    expect(r.stdout).toMatch(/softmax\(/);
  });

  it('500-deep block nesting: the line where Python would refuse it, exit 2', () => {
    let src = 'import torch\n\n\ndef f(x):\n';
    for (let i = 1; i <= 500; i++) src += `${'    '.repeat(i)}if x:\n`;
    src += `${'    '.repeat(501)}x = x + 1\n    return x\n`;
    const dir = tempProject({ 'blocks.py': src });
    const r = adopt(['explain', join(dir, 'blocks.py')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/blocks\.py:104:1: error: too many levels of indentation/);
    expect(looksLikeCrash(r.stderr)).toBe(false);
  });

  it('import cycles and mutually recursive helpers: analysed, cycle named', () => {
    const dir = tempProject({
      'cyc/__init__.py': '',
      'cyc/a.py': 'import torch\nfrom .b import g\n\n\ndef f(x):\n    return g(x)\n\n\nclass A(torch.nn.Module):\n    def forward(self, x):\n        return f(x)\n',
      'cyc/b.py': 'from .a import f\n\n\ndef g(x):\n    return f(x)\n',
    });
    const r = adopt(['explain', join(dir, 'cyc')]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/warning: recursive call to cyc\.a\.f is not inlined \(cycle a\.f -> b\.g -> a\.f\)/);
  });

  it('a missing file: exits 2 naming it', () => {
    const r = adopt(['explain', 'no/such/model.py']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/no\/such\/model\.py:1:1: error: no such file or directory/);
  });

  it('several missing files: each is named, the command fixed in one go', () => {
    const r = adopt(['rewrite', 'no/such/a.py', join(repoRoot, 'fixtures/models/bert_encoder.py'), 'no/such/b.py']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/no\/such\/a\.py:1:1: error: no such file or directory[^]*no\/such\/b\.py:1:1: error: no such file or directory/);
  });

  it('a directory with no Python: exits 2', () => {
    const dir = tempProject({ 'notes/readme.txt': 'hello' });
    const r = adopt(['explain', join(dir, 'notes')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/no Python files in this directory/);
  });

  it('a syntax error: reported with file:line:col, the rest analysed, no crash', () => {
    const dir = tempProject({ 'broken.py': `${MODEL}\n\nclass Broken(nn.Module)\n    def forward(self, x):\n        return x\n` });
    const r = adopt(['explain', join(dir, 'broken.py')]);
    expect(r.stderr).toMatch(/broken\.py:\d+:\d+: error: syntax error/);
    expect(r.stdout).toMatch(/module broken\.M/);
    expect(looksLikeCrash(r.stderr)).toBe(false);
  });

  it('bad usage: unknown command and bad option values exit 2', () => {
    expect(adopt(['frobnicate']).code).toBe(2);
    expect(adopt(['explain']).code).toBe(2);
    const r = adopt(['explain', '--max-file-size', 'lots', 'x.py']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--max-file-size must be a positive number/);
  });
});

describe('adopt verify --class --shape: a model that does not build or run', () => {
  it('is "not runnable" with a short reason and exit 2, not a mismatch with a traceback', () => {
    const src = 'import torch\nfrom torch import nn\n\n\nclass M(nn.Module):\n    def __init__(self, n):\n        super().__init__()\n        self.l = nn.Linear(n, n)\n\n    def forward(self, x):\n        return torch.softmax(self.l(x), dim=-1)\n';
    const dir = tempProject({ 'm.py': src });
    const f = join(dir, 'm.py');
    const r = adopt(['verify', f, f, '--class', 'M', '--shape', '2,3', '--config', '{"n": 5}']);
    expect(r.code).toBe(2);
    expect(r.stdout).toMatch(/^not runnable: the original M does not build or run on shape \(2,3\): RuntimeError: mat1 and mat2/);
    expect(r.stdout).not.toMatch(/Traceback| \| /);
  });
});
