// One file's check in torch (src/pipeline/check.ts): which files' classes are run for it.
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { checkFile, verdictOf } from '../src/pipeline/index.js';
import { tempProject } from './helpers/ir.js';

const block = (name: string) => `import torch
from torch import nn


class ${name}(nn.Module):
    def __init__(self, dim=16):
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        return torch.softmax(self.proj(x), dim=-1)
`;

describe('checkFile', () => {
  it('a rewrite that does not import is a mismatch of its own file; the package\'s other files are not checked for it', () => {
    const dir = tempProject({ 'pkg/__init__.py': '', 'pkg/model.py': block('Block'), 'pkg/other.py': block('Other') });
    const check = checkFile(join(dir, 'pkg/model.py'), { rewritten: `import adopt_no_such_package\n${block('Block')}` }, { dtype: 'fp64', repeats: 0 });
    expect(check.ok).toBe(true);
    if (!check.ok) return;
    expect(check.results.some((r) => (r.class ?? '').startsWith('other.py:'))).toBe(false);
    const v = verdictOf(check);
    expect(v.status).toBe('mismatch');
    expect(v.problems?.join(' ')).toContain('adopt_no_such_package');
  });

  it('a helper module with no classes of its own is checked through the package files that use it', () => {
    const helper = 'import torch\n\n\ndef act(x):\n    return torch.softmax(x, dim=-1)\n';
    const user = block('User').replace('from torch import nn', 'from torch import nn\n\nfrom .helper import act').replace('torch.softmax(self.proj(x), dim=-1)', 'act(self.proj(x))');
    const dir = tempProject({ 'pkg/__init__.py': '', 'pkg/helper.py': helper, 'pkg/user.py': user });
    const check = checkFile(join(dir, 'pkg/helper.py'), { rewritten: helper.replace('dim=-1', '-1') }, { dtype: 'fp64', repeats: 0 });
    expect(check.ok && check.results.map((r) => [r.class, r.status])).toEqual([['user.py:User', 'verified']]);
  });
});
