// A broken rule file given with --rules stops `rewrite` as `rules check` reports it: the rule file,
// the line and column of what is wrong, exit 2, and no input touched.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { adopt, looksLikeCrash } from './helpers/cli.js';
import { tempProject } from './helpers/ir.js';

const model = 'import torch\nfrom torch import nn\n\n\nclass Head(nn.Module):\n    def forward(self, x):\n        return torch.softmax(x, dim=-1)\n';

/** A softmax rule whose rewrite expression (line 9) is `expr`. */
const ruleWith = (expr: string) => [
  '// softmax over the last dimension, through the fused kernel',
  'rule last_softmax',
  '  priority 45',
  '  match',
  '    y = softmax($x, ...)',
  '  where',
  '    last_dim(y)',
  '  rewrite expr y',
  '    guard "_adopt is not None and _adopt.enabled(\'softmax\')"',
  `    "${expr}"`,
  '',
].join('\n');

const project = (expr: string) => tempProject({ 'm.py': model, 'r.rule': ruleWith(expr) });

describe('rule file errors', () => {
  it('a rewrite template that is not Python: rewrite names the rule file at the template line, writes nothing', () => {
    const dir = project('_adopt.softmax(({x}, dim=-1)');
    for (const args of [['rewrite', '--rules', './r.rule', 'm.py', '-o', 'out'], ['rewrite', '--rules', './r.rule', '--in-place', 'm.py'], ['rules', 'check', './r.rule']]) {
      const r = adopt(args, { cwd: dir });
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(/^\.\/r\.rule:10:5: error: rule last_softmax: the rewrite expression would not be Python/m);
      expect(looksLikeCrash(r.stderr)).toBe(false);
    }
    expect(existsSync(join(dir, 'out'))).toBe(false);
    expect(readFileSync(join(dir, 'm.py'), 'utf8')).toBe(model);
  });

  it('an unbound {name} placeholder is reported at its own line and column', () => {
    const dir = project('_adopt.softmax({xx}, dim=-1)');
    for (const args of [['rewrite', '--rules', './r.rule', 'm.py'], ['rules', 'check', './r.rule']]) {
      const r = adopt(args, { cwd: dir });
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(/^\.\/r\.rule:10:21: error: rewrite uses \{xx\}, but 'xx' is not bound by the pattern/m);
      expect(r.stdout, args.join(' ')).toBe('');
    }
  });

  it('a rule file without problems rewrites as before', () => {
    const dir = project('_adopt.softmax({x}, dim=-1)');
    const r = adopt(['rewrite', '--rules', './r.rule', 'm.py'], { cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/_adopt\.softmax\(x, dim=-1\)/);
  });
});
