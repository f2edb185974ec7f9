// A module class defined inside a function (a model factory) is not read by analysis, which
// takes classes from a file's top level: the user is told where it is, and nothing else is.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { analyzePaths } from '../../src/analysis/analyze.js';
import { tempProject } from '../helpers/ir.js';

const FACTORY = [
  'import torch',
  'from torch import nn',
  '',
  '',
  'def make_model(d=16):',
  '    class Inner(nn.Module):',
  '        def __init__(self):',
  '            super().__init__()',
  '            self.fc = nn.Linear(d, d)',
  '',
  '        def forward(self, x):',
  '            return torch.tanh(self.fc(x))',
  '    return Inner()',
  '',
  '',
  'def helpers():',
  '    class Config:',
  '        size = 4',
  '',
  '    @dataclass',
  '    class Plain(object):',
  '        n: int = 1',
  '    return Config, Plain',
  '',
  '',
  'class Outer(nn.Module):',
  '    class Nested(nn.Module):',
  '        pass',
  '',
  '    def forward(self, x):',
  '        s = "    class Fake(nn.Module):"',
  '        return x',
  '',
].join('\n');

describe('a module class inside a function', () => {
  it('is a warning at its class statement; classes that are not modules, and classes in classes, are not', () => {
    const dir = tempProject({ 'm.py': FACTORY });
    const { program } = analyzePaths([join(dir, 'm.py')]);
    const d = program.files[0].diagnostics.filter((x) => x.code === 'nested-module');
    expect(d).toEqual([{
      severity: 'warning', code: 'nested-module', file: expect.stringMatching(/m\.py$/), line: 6, col: 5,
      message: 'module class Inner is defined inside function make_model: it is not analysed (define it at the top level of the file)',
    }]);
  });
});
