// The native syntax-tree walk is optional: without a C compiler the build says so once and
// succeeds, and adopt then copies trees through tree-sitter's cursor. Both front ends must give
// the user the same output, and an addon that does not load is one note, never a crash.
import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ADDON_PATH } from '../src/parse/flat-tree.js';
import { adopt, looksLikeCrash, repoRoot } from './helpers/cli.js';
import { modelsDir } from './helpers/fixtures.js';

/** The same command with the native walk, with the cursor copy, and with an addon that fails to load. */
function threeWays(args: string[]) {
  return {
    native: adopt(args),
    cursor: adopt(args, { env: { ADOPT_NATIVE_TREE: '0' } }),
    broken: adopt(args, { env: { ADOPT_NATIVE_TREE: join(repoRoot, 'package.json') } }),
  };
}

describe('native syntax-tree walk', () => {
  it('is built in this checkout', () => {
    expect(existsSync(ADDON_PATH), `${ADDON_PATH}: run node scripts/build-native.mjs`).toBe(true);
  });

  it('gives the same explain, rewrite and syntax errors as the cursor copy', () => {
    const files = ['bert_encoder.py', 'gpt2_style.py', 'syntax_error.py'].map((f) => join(modelsDir, f));
    for (const args of [['explain', '--json', ...files], ['rewrite', ...files]]) {
      const { native, cursor, broken } = threeWays(args);
      expect(native.stdout.length, args.join(' ')).toBeGreaterThan(200);
      expect(cursor, args.join(' ')).toEqual(native);
      expect(native.stderr).not.toMatch(/native syntax-tree walk/);
      // a file that is not an addon: one note, then the same output as the cursor copy
      expect(broken.stdout).toEqual(native.stdout);
      expect(broken.code).toEqual(native.code);
      expect(broken.stderr.match(/native syntax-tree walk .* did not load/g)).toHaveLength(1);
      expect(looksLikeCrash(broken.stderr)).toBe(false);
    }
  });

  it('build says once that it needs a C compiler, succeeds, and leaves a built addon alone', () => {
    const before = statSync(ADDON_PATH).mtimeMs;
    const env = { ...process.env, PATH: '/nonexistent', CC: '' };
    const r = spawnSync(process.execPath, [join(repoRoot, 'scripts/build-native.mjs'), '--force'], { encoding: 'utf8', env });
    expect(r.status).toBe(0);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/no C compiler found.*cursor instead/);
    expect(statSync(ADDON_PATH).mtimeMs).toBe(before);
  });
});
