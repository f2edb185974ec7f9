// `rewrite -o`: where each output lands for inputs in different directories, that no output ever
// lands outside the output directory or on an input, and that a directory input comes out whole.
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { adopt, looksLikeCrash } from './helpers/cli.js';
import { tempProject } from './helpers/ir.js';

const head = (name: string) => `import torch\nfrom torch import nn\n\n\nclass ${name}(nn.Module):\n    def forward(self, x):\n        return nn.functional.softmax(x, dim=-1)\n`;
const plain = 'import torch\nfrom torch import nn\n\n\nclass Id(nn.Module):\n    def forward(self, x):\n        return x + 1\n';

/** Every file under `dir`, as paths relative to it. */
function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const n of readdirSync(d)) statSync(join(d, n)).isDirectory() ? walk(join(d, n)) : out.push(relative(dir, join(d, n)));
  };
  if (existsSync(dir)) walk(dir);
  return out.sort();
}

describe('rewrite -o with several inputs', () => {
  it('inputs in sibling directories land under OUT by their paths from the common directory; the inputs are untouched', () => {
    const dir = tempProject({ 'a/vit.py': head('Vit'), 'b/t5.py': head('T5') });
    const r = adopt(['rewrite', 'a/vit.py', 'b/t5.py', '-o', 'out'], { cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    expect(tree(join(dir, 'out'))).toEqual(['a/vit.py', 'b/t5.py']);
    expect(readFileSync(join(dir, 'out', 'b', 't5.py'), 'utf8')).toMatch(/_adopt\.softmax\(/);
    expect(readFileSync(join(dir, 'a', 'vit.py'), 'utf8')).toBe(head('Vit'));
    expect(readFileSync(join(dir, 'b', 't5.py'), 'utf8')).toBe(head('T5'));
    expect(tree(dir)).toEqual(['a/vit.py', 'b/t5.py', 'out/a/vit.py', 'out/b/t5.py']);
  });

  it('an input above the working directory (../) still lands under OUT', () => {
    const dir = tempProject({ 'models/x.py': head('X'), 'run/good.py': head('Good') });
    const r = adopt(['rewrite', '../models/x.py', 'good.py', '-o', 'o3'], { cwd: join(dir, 'run') });
    expect(r.code, r.stderr).toBe(0);
    expect(tree(join(dir, 'run', 'o3'))).toEqual(['models/x.py', 'run/good.py']);
    expect(tree(dir)).toEqual(['models/x.py', 'run/good.py', 'run/o3/models/x.py', 'run/o3/run/good.py']);
    expect(readFileSync(join(dir, 'models', 'x.py'), 'utf8')).toBe(head('X'));
  });

  it('an OUT whose mirror would put outputs on the inputs is refused, nothing written, exit 2', () => {
    const dir = tempProject({ 'a/vit.py': head('Vit'), 'b/t5.py': head('T5') });
    const r = adopt(['rewrite', 'a/vit.py', 'b/t5.py', '-o', '.'], { cwd: dir });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/a\/vit\.py: its output a\/vit\.py is an input file/);
    expect(r.stderr).toMatch(/b\/t5\.py: its output b\/t5\.py is an input file/);
    expect(r.stderr).toMatch(/nothing was written to \./);
    expect(looksLikeCrash(r.stderr)).toBe(false);
    expect(readFileSync(join(dir, 'a', 'vit.py'), 'utf8')).toBe(head('Vit'));
    expect(readFileSync(join(dir, 'b', 't5.py'), 'utf8')).toBe(head('T5'));
  });

  it('-o naming the one input file is refused: --in-place is how an input is rewritten', () => {
    const dir = tempProject({ 'm.py': head('M') });
    const r = adopt(['rewrite', 'm.py', '-o', 'm.py'], { cwd: dir });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/m\.py: its output m\.py is an input file/);
    expect(readFileSync(join(dir, 'm.py'), 'utf8')).toBe(head('M'));
  });
});

describe('rewrite -o with a directory input', () => {
  const pkg = {
    'models/pkg/__init__.py': 'from .model import Head\n',
    'models/pkg/model.py': head('Head'),
    'models/pkg/layers/__init__.py': '',
    'models/pkg/layers/plain.py': plain,
    'models/pkg/vocab.json': '{"a": 1}\n',
    'models/pkg/__pycache__/model.cpython-311.pyc': 'stale bytecode',
  };

  it('writes the whole package: rewritten files rewritten, every other file copied as it was', () => {
    const dir = tempProject(pkg);
    const r = adopt(['rewrite', 'models/pkg', '-o', 'rw/pkg'], { cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    expect(tree(join(dir, 'rw', 'pkg'))).toEqual(['__init__.py', 'layers/__init__.py', 'layers/plain.py', 'model.py', 'vocab.json']);
    expect(readFileSync(join(dir, 'rw', 'pkg', 'model.py'), 'utf8')).toMatch(/_adopt\.softmax\(/);
    for (const same of ['__init__.py', 'layers/plain.py', 'vocab.json']) {
      expect(readFileSync(join(dir, 'rw', 'pkg', same), 'utf8'), same).toBe(readFileSync(join(dir, 'models', 'pkg', same), 'utf8'));
    }
    expect(r.stderr).toMatch(/4 other file\(s\) of the input copied unchanged into rw\/pkg/);
    expect(r.stderr).toMatch(/1 rewritten in 1 file\(s\)/);
  });

  it('a package with nothing to rewrite is still copied whole', () => {
    const dir = tempProject({ 'pkg/__init__.py': '', 'pkg/plain.py': plain });
    const r = adopt(['rewrite', 'pkg', '-o', 'out'], { cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    expect(tree(join(dir, 'out'))).toEqual(['__init__.py', 'plain.py']);
  });

  it('an OUT inside the input directory is refused before anything is written', () => {
    const dir = tempProject(pkg);
    const r = adopt(['rewrite', 'models/pkg', '-o', 'models/pkg/rw'], { cwd: dir });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/-o models\/pkg\/rw is inside the input directory models\/pkg/);
    expect(existsSync(join(dir, 'models', 'pkg', 'rw'))).toBe(false);
    expect(readFileSync(join(dir, 'models', 'pkg', 'model.py'), 'utf8')).toBe(head('Head'));
  });
});
