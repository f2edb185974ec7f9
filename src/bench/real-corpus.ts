// The real-code corpus: pinned PyPI packages fetched into .cache/real/<pkg>-<ver>/ at bench time
// (a wheel when there is one, else the source archive) and unpacked beside it; nothing of their
// code is committed, only labels that point into it.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { cacheDir } from './corpus.js';

/** `name==version` split, with a clear error for anything else. */
export function parsePin(pin: string): { name: string; version: string } {
  const m = /^([A-Za-z0-9_.-]+)==([A-Za-z0-9_.+-]+)$/.exec(pin);
  if (!m) throw new Error(`labels: package key '${pin}' is not of the form name==version`);
  return { name: m[1], version: m[2] };
}

/** The directory the package's archive is unpacked into; labelled paths are relative to it. */
export function packageSourceDir(pin: string): string {
  const { name, version } = parsePin(pin);
  return join(cacheDir(), 'real', `${name}-${version}`, 'src');
}

function pip(python: string, args: string[]): boolean {
  try {
    execFileSync(python, ['-m', 'pip', 'download', '--quiet', '--no-deps', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    return true;
  } catch {
    return false;
  }
}

const UNPACK = [
  'import sys, zipfile, tarfile',
  'a, out = sys.argv[1], sys.argv[2]',
  'if a.endswith(".whl"): zipfile.ZipFile(a).extractall(out)',
  'else: tarfile.open(a).extractall(out)',
].join('\n');

/** Fetch and unpack `name==version` unless it is already in the cache; returns its source dir. */
export function ensurePackage(pin: string): string {
  const src = packageSourceDir(pin);
  if (existsSync(src)) return src;
  const dir = join(src, '..');
  mkdirSync(dir, { recursive: true });
  const python = process.env.PYTHON ?? 'python3';
  process.stderr.write(`fetching ${pin} from PyPI into ${dir}\n`);
  const archives = () => readdirSync(dir).filter((f) => f.endsWith('.whl') || f.endsWith('.tar.gz') || f.endsWith('.zip'));
  if (!pip(python, ['--only-binary=:all:', pin, '-d', dir]) || !archives().length) {
    if (!pip(python, ['--no-binary=:all:', pin, '-d', dir])) throw new Error(`pip could not download ${pin} (neither a wheel nor a source archive)`);
  }
  const archive = archives()[0];
  if (!archive) throw new Error(`pip produced no archive for ${pin} in ${dir}`);
  execFileSync(python, ['-c', UNPACK, join(dir, archive), src]);
  return src;
}
