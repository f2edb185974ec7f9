// A file with a syntax error is named with its first error and never rewritten: not in place, not
// to -o, not in the diff. The other files of the run are rewritten, and the exit is 2.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { adopt, looksLikeCrash } from './helpers/cli.js';
import { tempProject } from './helpers/ir.js';

const good = 'import torch\nfrom torch import nn\n\n\nclass Good(nn.Module):\n    def forward(self, x):\n        return nn.functional.softmax(x, dim=-1)\n';
// line 8 closes one parenthesis too many; line 9 is valid Python that tree-sitter's recovery misreads
const broken = [
  'import torch',
  'from torch import nn',
  '',
  '',
  'class Broken(nn.Module):',
  '    def forward(self, q, k):',
  '        q = nn.functional.softmax(q, dim=-1)',
  '        attn = q @ k.transpose(-2, -1))',
  '        q = q * 2',
  '        return nn.functional.softmax(attn, dim=-1)',
  '',
].join('\n');

const files = () => tempProject({ 'bad.py': broken, 'good.py': good });
const syntaxErrors = (stderr: string) => stderr.split('\n').filter((l) => /error: syntax error/.test(l));

describe('rewrite: a file with a syntax error', () => {
  it('--in-place leaves it as it was, rewrites the other file, exit 2', () => {
    const dir = files();
    const r = adopt(['rewrite', '--in-place', 'bad.py', 'good.py'], { cwd: dir });
    expect(r.code).toBe(2);
    expect(readFileSync(join(dir, 'bad.py'), 'utf8')).toBe(broken);
    expect(readFileSync(join(dir, 'good.py'), 'utf8')).toMatch(/_adopt\.softmax\(/);
    expect(looksLikeCrash(r.stderr)).toBe(false);
  });

  it('-o writes nothing for it', () => {
    const dir = files();
    const r = adopt(['rewrite', 'bad.py', '-o', 'o1/x.py'], { cwd: dir });
    expect(r.code).toBe(2);
    expect(existsSync(join(dir, 'o1'))).toBe(false);
    expect(r.stderr).toMatch(/0 rewritten in 0 file\(s\)/);
  });

  it('the diff holds only the other file', () => {
    const dir = files();
    const r = adopt(['rewrite', 'bad.py', 'good.py'], { cwd: dir });
    expect(r.code).toBe(2);
    expect(r.stdout).toMatch(/^--- a\/good\.py$/m);
    expect(r.stdout).not.toMatch(/bad\.py/);
  });

  it('is reported once, at its first error, as file:line:col', () => {
    const dir = files();
    for (const cmd of [['rewrite', 'bad.py'], ['explain', 'bad.py']]) {
      const r = adopt(cmd, { cwd: dir });
      expect(r.code, cmd[0]).toBe(2);
      expect(syntaxErrors(r.stderr), cmd[0]).toEqual([expect.stringMatching(/^bad\.py:8:\d+: error: syntax error/)]);
    }
  });

  it('--json: its sites are skipped with the reason, and it is not changed', () => {
    const dir = files();
    const j = JSON.parse(adopt(['rewrite', '--json', 'bad.py', 'good.py'], { cwd: dir }).stdout);
    const bad = j.sites.filter((s: { file: string }) => s.file === 'bad.py');
    expect(bad.length).toBeGreaterThan(0);
    for (const s of bad) expect(s).toMatchObject({ decision: 'skipped', reason: expect.stringMatching(/syntax error/) });
    expect(j.files).toEqual(expect.arrayContaining([
      { path: 'bad.py', changed: false, error: expect.stringMatching(/^bad\.py:8:\d+: error: syntax error/) },
      { path: 'good.py', changed: true, error: null },
    ]));
  });
});
