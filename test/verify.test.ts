import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { adopt, repoRoot } from './helpers/cli.js';
import { tempProject } from './helpers/ir.js';

const rulesDir = join(repoRoot, 'rules');

describe('adopt verify', () => {
  it('verifies a correct rewrite (outputs and gradients, eval and train)', () => {
    const r = adopt(['verify', join(rulesDir, 'dropout_add_layernorm', 'before.py'), join(rulesDir, 'dropout_add_layernorm', 'after.py'), '--class', 'SelfOutput', '--shape', '2,7,32', '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ status: 'verified', problems: [] });
  });

  it('catches a wrong rewrite: a softmax moved to another dimension', () => {
    const before = readFileSync(join(rulesDir, 'softmax', 'before.py'), 'utf8');
    const wrong = before.replace('nn.functional.softmax(scores, dim=-1)', 'nn.functional.softmax(scores, dim=-2)');
    const dir = tempProject({ 'wrong.py': wrong });
    const r = adopt(['verify', join(rulesDir, 'softmax', 'before.py'), join(dir, 'wrong.py'), '--class', 'ScoresHead', '--shape', '2,4,9,9']);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/mismatch:\n\s+eval output 0: max abs error/);
  });

  it('catches a rewrite that breaks checkpoint loading', () => {
    const before = readFileSync(join(rulesDir, 'conv_bn', 'before.py'), 'utf8');
    const renamed = before.replaceAll('self.bn', 'self.norm');
    const dir = tempProject({ 'renamed.py': renamed });
    const r = adopt(['verify', join(rulesDir, 'conv_bn', 'before.py'), join(dir, 'renamed.py'), '--class', 'ConvBlock', '--shape', '2,3,9,9']);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/does not load the original state dict strictly/);
  });

  it('bad usage exits 2', () => {
    expect(adopt(['verify', 'a.py', 'b.py', '--shape', '2,3']).code).toBe(2);
    expect(adopt(['verify', 'a.py', 'b.py', '--class', 'M', '--shape', 'two']).code).toBe(2);
  });
});
