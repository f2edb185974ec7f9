// A file with a syntax error is named with its first error and never rewritten: not in place, not
// to -o, not in the diff. The other files of the run are rewritten, and the exit is 2.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { adopt, looksLikeCrash } from './helpers/cli.js';
import { tempProject } from './helpers/ir.js';
import { PYTHON3_CASES } from './helpers/python3-cases.js';

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

describe('files python3 refuses that the grammar parses', () => {
  const py2 = 'import torch\nfrom torch import nn\n\nprint "loaded"\n\n\nclass P(nn.Module):\n    def forward(self, x):\n        return nn.functional.softmax(x, dim=-1)\n';
  const tabs = 'import torch\nfrom torch import nn\n\n\nclass T(nn.Module):\n    def forward(self, x):\n\tx = x * 2\n\treturn nn.functional.softmax(x, dim=-1)\n';
  const tabsOnly = tabs.replace('    def', '\tdef').replace(/\n\tx/, '\n\t\tx').replace(/\n\treturn/, '\n\t\treturn');

  it('a print statement and tabs after spaces: explain exits 2 at the line, rewrite leaves them alone', () => {
    const dir = tempProject({ 'py2.py': py2, 'tabs.py': tabs, 'good.py': good });
    for (const [file, line, text] of [['py2.py', 4, py2], ['tabs.py', 7, tabs]] as const) {
      const e = adopt(['explain', file], { cwd: dir });
      expect(e.code, file).toBe(2);
      expect(syntaxErrors(e.stderr), file).toEqual([expect.stringMatching(new RegExp(`^${file.replace('.', '\\.')}:${line}:1: error: syntax error`))]);
      expect(looksLikeCrash(e.stderr)).toBe(false);
      const r = adopt(['rewrite', '--in-place', file, 'good.py'], { cwd: dir });
      expect(r.code, file).toBe(2);
      expect(readFileSync(join(dir, file), 'utf8')).toBe(text);
    }
    expect(readFileSync(join(dir, 'good.py'), 'utf8')).toMatch(/_adopt\.softmax\(/);
  });

  it('a file indented with tabs alone is rewritten', () => {
    const dir = tempProject({ 'tabs.py': tabsOnly });
    const r = adopt(['rewrite', '--in-place', 'tabs.py'], { cwd: dir });
    expect(r.code).toBe(0);
    expect(readFileSync(join(dir, 'tabs.py'), 'utf8')).toMatch(/\n\t\treturn \(_adopt\.softmax\(/);
  });

  it('the cases of the unit tier are what python3 says', () => {
    const python = process.env.ADOPT_PYTHON ?? 'python3';
    const check = 'import ast, sys\ntry:\n    ast.parse(open(sys.argv[1], encoding="utf-8").read())\n    print("ok")\nexcept SyntaxError as e:\n    print(e.lineno)\n';
    for (const c of PYTHON3_CASES) {
      const dir = tempProject({ 'case.py': c.text });
      const r = spawnSync(python, ['-c', check, join(dir, 'case.py')], { encoding: 'utf8' });
      expect(r.stdout.trim(), c.name).toBe(c.line === null ? 'ok' : String(c.line));
    }
  });
});
