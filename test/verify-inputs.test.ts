// `adopt verify` with inputs that are not there: every missing one named, before anything runs.
import { describe, expect, it } from 'vitest';
import { adopt, looksLikeCrash } from './helpers/cli.js';
import { tempProject } from './helpers/ir.js';

describe('verify: missing inputs', () => {
  it('names each missing file as `path: no such file`, exit 2', () => {
    const dir = tempProject({ 'here.py': 'x = 1\n' });
    const both = adopt(['verify', 'nope.py', 'nope2.py'], { cwd: dir });
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/^adopt: nope\.py: no such file$/m);
    expect(both.stderr).toMatch(/^adopt: nope2\.py: no such file$/m);
    expect(looksLikeCrash(both.stderr)).toBe(false);
    for (const [args, named, present] of [[['here.py', 'gone.py'], 'gone.py', 'here.py'], [['gone.py', 'here.py'], 'gone.py', 'here.py']] as const) {
      const r = adopt(['verify', ...args], { cwd: dir });
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(new RegExp(`^adopt: ${named.replace('.', '\\.')}: no such file$`, 'm'));
      expect(r.stderr).not.toContain(`${present}:`);
    }
  });
});
