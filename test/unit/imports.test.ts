// How imports bind names across the files of a run: star imports of project modules bind what
// Python's would, a star import adopt cannot follow says so where it stands, and a relative import
// resolves in the importing file's own package whatever the other inputs are.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { analyzePaths } from '../../src/analysis/analyze.js';
import type { Program } from '../../src/dsl/ir.js';
import { modelsDir } from '../helpers/fixtures.js';
import { methodOf, moduleOf, opsOf, tempProject } from '../helpers/ir.js';

const LAYERS = [
  'import torch',
  'from torch import nn',
  '',
  '__all__ = ["StarBlock", "scaled"]',
  '',
  '',
  'def scaled(x, s):',
  '    return torch.relu(x * s)',
  '',
  '',
  'def hidden(x):',
  '    return torch.sigmoid(x)',
  '',
  '',
  'class StarBlock(nn.Module):',
  '    def __init__(self, d=16):',
  '        super().__init__()',
  '        self.lin = nn.Linear(d, d)',
  '',
  '    def forward(self, x):',
  '        return scaled(self.lin(x), 2.0)',
  '',
].join('\n');

const user = (imports: string) => [
  'import torch',
  'from torch import nn',
  imports,
  '',
  '',
  'class Outer(nn.Module):',
  '    def __init__(self, d=16):',
  '        super().__init__()',
  '        self.b = StarBlock(d)',
  '',
  '    def forward(self, x):',
  '        return scaled(self.b(x), 3.0)',
  '',
].join('\n');

const diagnosticsOf = (p: Program, code: string) => p.files.flatMap((f) => f.diagnostics.filter((d) => d.code === code));

describe('star imports', () => {
  it('of a project module bind its __all__ names as the explicit import does', () => {
    const dir = tempProject({
      'pkg/__init__.py': '', 'pkg/layers.py': LAYERS,
      'pkg/star.py': user('from .layers import *'), 'pkg/explicit.py': user('from .layers import StarBlock, scaled'),
    });
    const forms = ['star', 'explicit'].map((m) => {
      const { program } = analyzePaths([join(dir, 'pkg', `${m}.py`)]);
      const outer = moduleOf(program, 'Outer');
      expect(diagnosticsOf(program, 'star-import')).toEqual([]);
      return { attrs: outer.attrs.map((a) => a.value), ops: opsOf(methodOf(outer).body).map((o) => [o.callee, o.via, o.type]) };
    });
    expect(forms[0].attrs).toEqual([expect.objectContaining({ callee: 'pkg.layers.StarBlock' })]);
    // `scaled` is inlined from layers.py, as an explicitly imported helper is
    expect(forms[0].ops).toContainEqual(['relu', ['pkg.layers.scaled'], undefined]);
    expect(forms[0]).toEqual(forms[1]);
  });

  it('bind only __all__ when the module has one, else every name without a leading underscore', () => {
    const withAll = tempProject({ 'pkg/__init__.py': '', 'pkg/layers.py': LAYERS, 'pkg/m.py': 'from .layers import *\nimport torch\n\n\ndef f(x):\n    return hidden(x)\n' });
    const a = analyzePaths([join(withAll, 'pkg', 'm.py')]).program;
    expect(opsOf(a.files[0].functions[0].body).map((o) => o.callee)).toEqual(['hidden']);
    expect(opsOf(a.files[0].functions[0].body)[0].kind).toBe('unknown');

    const noAll = LAYERS.replace(/__all__ = .*\n/, '').replace('def hidden', 'def _private(x):\n    return x\n\n\ndef hidden');
    const without = tempProject({ 'pkg/__init__.py': '', 'pkg/layers.py': noAll, 'pkg/m.py': 'from .layers import *\nimport torch\n\n\ndef f(x):\n    return hidden(_private(x))\n' });
    const b = analyzePaths([join(without, 'pkg', 'm.py')]).program;
    const ops = opsOf(b.files[0].functions[0].body);
    expect(ops.find((o) => o.callee === 'sigmoid')?.via).toEqual(['pkg.layers.hidden']);
    expect(ops.find((o) => o.callee === '_private')?.kind).toBe('unknown');
  });

  it('a name the file binds itself is not replaced by a star-imported one', () => {
    const dir = tempProject({ 'pkg/__init__.py': '', 'pkg/layers.py': LAYERS, 'pkg/m.py': 'from .layers import *\nimport torch\n\n\ndef scaled(x, s):\n    return torch.tanh(x)\n\n\ndef f(x):\n    return scaled(x, 2)\n' });
    const { program } = analyzePaths([join(dir, 'pkg', 'm.py')]);
    const f = program.files[0].functions.find((fn) => fn.name === 'f')!;
    expect(opsOf(f.body).find((o) => o.callee === 'tanh')?.via).toEqual(['pkg.m.scaled']);
  });

  it('two modules that star-import each other end', () => {
    const dir = tempProject({ 'pkg/__init__.py': '', 'pkg/a.py': 'from .b import *\nimport torch\n\n\ndef fa(x):\n    return fb(x)\n', 'pkg/b.py': 'from .a import *\nimport torch\n\n\ndef fb(x):\n    return torch.relu(x)\n' });
    const { program } = analyzePaths([join(dir, 'pkg', 'a.py')]);
    expect(opsOf(program.files[0].functions[0].body).find((o) => o.callee === 'relu')?.via).toEqual(['pkg.b.fb']);
  });

  it('of a module outside the project: a warning at the import, the names left as they are', () => {
    const dir = tempProject({ 'm.py': 'import torch\nfrom torch import nn\nfrom torch.nn import *\n\n\nclass M(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.n = LayerNorm(4)\n\n    def forward(self, x):\n        return self.n(x)\n' });
    const { program } = analyzePaths([join(dir, 'm.py')]);
    expect(diagnosticsOf(program, 'star-import')).toEqual([expect.objectContaining({
      severity: 'warning', line: 3, col: 6, message: expect.stringMatching(/'from torch\.nn import \*' are not resolved/),
    })]);
    expect(moduleOf(program, 'M').attrs[0].value).toMatchObject({ callee: 'LayerNorm' });
  });
});

describe('relative imports', () => {
  const pkg = () => tempProject({ 'pkg/__init__.py': '', 'pkg/layers.py': LAYERS, 'pkg/user.py': user('from .layers import StarBlock, scaled\nfrom .missing import nothing\nfrom ..outside import Thing') });

  it('resolve in the importing file\'s package whichever input comes first', () => {
    const dir = pkg();
    const other = join(modelsDir, 'gpt2_style.py');
    const runs = [[other, join(dir, 'pkg', 'user.py')], [join(dir, 'pkg', 'user.py'), other]].map((inputs) => {
      const { program } = analyzePaths(inputs);
      const file = program.files.find((f) => f.path.endsWith('user.py'))!;
      return {
        attrs: moduleOf(program, 'Outer').attrs.map((a) => a.value),
        unresolved: file.diagnostics.filter((d) => d.code === 'import-unresolved').map((d) => [d.line, d.message]),
      };
    });
    expect(runs[0].attrs).toEqual([expect.objectContaining({ callee: 'pkg.layers.StarBlock' })]);
    expect(runs[0]).toEqual(runs[1]);
    // a package's __init__.py resolves in the same package
    const init = tempProject({ 'pkg/__init__.py': 'from .layers import StarBlock\n', 'pkg/layers.py': LAYERS });
    const { program } = analyzePaths([other, join(init, 'pkg', '__init__.py')]);
    expect(program.files.flatMap((f) => f.diagnostics.filter((d) => d.code === 'import-unresolved'))).toEqual([]);
    // the unresolved ones are named against the package's own directory, not the first input's
    expect(runs[0].unresolved).toEqual([
      [4, `cannot resolve import '.missing' (module pkg.missing) under ${dir}`],
      [5, "cannot resolve import '..outside': it goes beyond the top-level package pkg"],
    ]);
  });
});
