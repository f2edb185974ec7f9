// The package as npm packs it: an installed copy builds the native syntax-tree walk with its
// install script (the script and the C source are in the package's files), and a copy where it is
// not built says so once and gives the same output through the cursor copy.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { adopt, looksLikeCrash, repoRoot } from './helpers/cli.js';
import { modelsDir } from './helpers/fixtures.js';
import { tempProject } from './helpers/ir.js';

const NOTE = /native syntax-tree walk/g;

function run(cmd: string, args: string[], cwd: string) {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  expect(r.status, `${cmd} ${args.join(' ')}: ${r.stderr}`).toBe(0);
  return r.stdout;
}

/** The packed package unpacked into a temporary directory, its dependencies the checkout's. */
function installedCopy(): string {
  const dir = tempProject({});
  // scripts are not run: the checkout is built, and packing must not rebuild it
  const [packed] = JSON.parse(run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', dir], repoRoot));
  run('tar', ['-xzf', join(dir, packed.filename), '-C', dir], dir);
  const pkg = join(dir, 'package');
  symlinkSync(join(repoRoot, 'node_modules'), join(pkg, 'node_modules'));
  return pkg;
}

describe('the packed package', () => {
  it('builds the native walk at install, and without it falls back with one note', () => {
    const pkg = installedCopy();
    const manifest = JSON.parse(readFileSync(join(pkg, 'package.json'), 'utf8'));
    expect(manifest.scripts.install).toMatch(/build-native\.mjs/);
    expect(existsSync(join(pkg, 'build'))).toBe(false);

    // what npm runs after installing the package's dependencies
    const build = spawnSync('npm', ['run', 'install'], { cwd: pkg, encoding: 'utf8' });
    expect(build.status, build.stderr).toBe(0);
    expect(readdirSync(join(pkg, 'build', 'native'))).toContain('flat_tree.node');

    const file = join(modelsDir, 'bert_encoder.py');
    const cli = (env: Record<string, string> = {}) => spawnSync(process.execPath, [join(pkg, 'bin', 'adopt.js'), 'explain', '--json', file], { encoding: 'utf8', env: { ...process.env, ...env } });
    const native = cli();
    expect(native.status, native.stderr).toBe(0);
    expect(native.stderr).not.toMatch(NOTE);
    expect(native.stdout).toEqual(adopt(['explain', '--json', file]).stdout);

    // not built (no compiler at install, or install scripts not run): one note, the same output
    rmSync(join(pkg, 'build'), { recursive: true });
    const fallback = cli();
    expect(fallback.status).toBe(0);
    expect(fallback.stdout).toEqual(native.stdout);
    expect(fallback.stderr.match(NOTE)).toHaveLength(1);
    expect(fallback.stderr).toMatch(/is not built .*build-native\.mjs/);
    expect(looksLikeCrash(fallback.stderr)).toBe(false);
    // turned off on purpose: no note
    expect(cli({ ADOPT_NATIVE_TREE: '0' }).stderr).not.toMatch(NOTE);
  }, 180_000);
});
