// One exit-code and JSON policy for every command (src/cli/policy.ts): a bad input file is exit 2
// for explain and rewrite alike, after the good files' output, and every input file is named.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { adopt, looksLikeCrash } from './helpers/cli.js';
import { tempProject } from './helpers/ir.js';

const MODEL = 'import torch\nfrom torch import nn\n\n\nclass M(nn.Module):\n    def forward(self, x):\n        return torch.softmax(x, dim=-1)\n';
const BINARY = Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0x00, 0x01, 0x02]);

describe('one exit-code policy for explain and rewrite', () => {
  it('a directory with one bad file: both print the good file, name the bad one, and exit 2', () => {
    const dir = tempProject({ 'pkg/good.py': MODEL, 'pkg/blob.py': BINARY });
    const explain = adopt(['explain', join(dir, 'pkg')]);
    expect(explain.code).toBe(2);
    expect(explain.stdout).toMatch(/module good\.M/);
    expect(explain.stderr).toMatch(/blob\.py:1:5: error: binary file/);
    const rewrite = adopt(['rewrite', join(dir, 'pkg')]);
    expect(rewrite.code, rewrite.stderr).toBe(2);
    expect(rewrite.stdout).toMatch(/^\+\+\+ .*good\.py/m);
    expect(rewrite.stderr).toMatch(/blob\.py:1:5: error: binary file/);
    expect(looksLikeCrash(rewrite.stderr)).toBe(false);
  });

  it('an empty file: both say there is nothing to analyse and exit 2', () => {
    const dir = tempProject({ 'empty.py': '' });
    for (const cmd of ['explain', 'rewrite']) {
      const r = adopt([cmd, join(dir, 'empty.py')]);
      expect(r.code, cmd).toBe(2);
      expect(r.stderr, cmd).toMatch(/nothing to analyse/);
    }
  });

  it('a file refused as too large is not also called "nothing to analyse"', () => {
    const dir = tempProject({ 'big.py': 'x = 1\n'.repeat(200_000) });
    for (const cmd of ['explain', 'rewrite']) {
      const r = adopt([cmd, join(dir, 'big.py'), '--max-file-size', '1']);
      expect(r.code, cmd).toBe(2);
      expect(r.stderr, cmd).toMatch(/big\.py:1:1: error: file is 1\.1 MiB, over the 1\.0 MiB limit/);
      expect(r.stderr, cmd).not.toMatch(/nothing to analyse/);
    }
  });

  it('a syntax error is an input error for both commands, after the rest is analysed', () => {
    const dir = tempProject({ 'broken.py': `${MODEL}\n\nclass Broken(nn.Module)\n    def forward(self, x):\n        return x\n` });
    for (const cmd of ['explain', 'rewrite']) {
      const r = adopt([cmd, join(dir, 'broken.py')]);
      expect(r.code, cmd).toBe(2);
      expect(r.stderr, cmd).toMatch(/broken\.py:\d+:\d+: error: syntax error/);
    }
  });

  it('rewrite --json lists every input file, the unreadable ones with their error', () => {
    const dir = tempProject({ 'pkg/good.py': MODEL, 'pkg/blob.py': BINARY, 'pkg/plain.py': 'def f(x):\n    return x\n' });
    const r = adopt(['rewrite', '--json', join(dir, 'pkg')]);
    expect(r.code).toBe(2);
    const files = JSON.parse(r.stdout).files as { path: string; changed: boolean; error: string | null }[];
    const by = (name: string) => files.find((f) => f.path.endsWith(`/${name}`));
    expect(files).toHaveLength(3);
    expect(by('blob.py')).toMatchObject({ changed: false, error: expect.stringMatching(/blob\.py:1:5: error: binary file/) });
    expect(by('good.py')).toMatchObject({ changed: true, error: null });
    expect(by('plain.py')).toMatchObject({ changed: false, error: null });
  });

  it('rewrite --check: 1 when something would change, 0 when not, 2 over both when a file is bad', () => {
    const dir = tempProject({ 'a/good.py': MODEL, 'b/plain.py': 'def f(x):\n    return x\n', 'c/good.py': MODEL, 'c/blob.py': BINARY });
    expect(adopt(['rewrite', '--check', join(dir, 'a')]).code).toBe(1);
    expect(adopt(['rewrite', '--check', join(dir, 'b')]).code).toBe(0);
    expect(adopt(['rewrite', '--check', join(dir, 'c')]).code).toBe(2);
  });
});

describe('no surface that does nothing', () => {
  it('rewrite takes neither --diff (the diff is the default) nor --target (verification measures on the CPU)', () => {
    const dir = tempProject({ 'm.py': MODEL });
    for (const flag of [['--diff'], ['--target', 'cuda']]) {
      const r = adopt(['rewrite', ...flag, join(dir, 'm.py')]);
      expect(r.code, flag[0]).toBe(2);
      expect(r.stderr).toMatch(new RegExp(`unknown option '${flag[0]}'`));
    }
  });
});

describe('adopt bench DIR without --verify', () => {
  it('says what each stage of the rewrite is doing, writes each diff, and leaves out the verification and speed charts', () => {
    const dir = tempProject({ 'm.py': MODEL, 'plain.py': 'def f(x):\n    return x\n' });
    const out = join(dir, 'results');
    const r = adopt(['bench', dir, '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    for (const stage of ['analysing 2 file', 'analyse done in', 'matching', 'match done in', 'synthesizing', 'synthesize done in']) expect(r.stderr).toContain(`bench: ${stage}`);
    const html = readFileSync(join(out, 'report.html'), 'utf8');
    expect(html).not.toMatch(/Models by verification status|Forward time, rewritten \/ original|speed \(rewritten/);
    expect(html).toMatch(/Sites per rule, rewritten/);
    const href = html.match(/<a href="([^"]+)">diff<\/a>/)?.[1];
    expect(href).toBe('diffs/m.diff');
    expect(readFileSync(join(out, href!), 'utf8')).toMatch(/^\+.*adopt_kernels/m);
    expect(html).toMatch(/<code>softmax<\/code>: 1 rewritten, 0 left alone/);
    expect(html).toMatch(/line 7-7 <code>softmax<\/code> in M\.forward: rewritten/);
    expect(existsSync(join(out, 'diffs', 'plain.diff'))).toBe(false);
  });
});
