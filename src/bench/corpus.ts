// The HF-199 corpus: transformers 4.35.0's modeling files, fetched from PyPI into a cache on
// first use (nothing of it is committed). Model names come from the benchmark ground truth.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AdoptError } from '../diag.js';
import { NATIVE_DIR, pythonExecutable, runPython } from '../verify/python.js';

export const TRANSFORMERS_VERSION = '4.35.0';

export function cacheDir(): string {
  return resolve(process.env.ADOPT_CACHE ?? join(process.cwd(), '.cache'));
}

/** The directory of the `transformers` package source, downloading the wheel if needed. */
export function ensureTransformers(version = TRANSFORMERS_VERSION): string {
  const dir = join(cacheDir(), `transformers-${version}`);
  const pkg = join(dir, 'transformers');
  if (existsSync(join(pkg, 'models', 'bert', 'modeling_bert.py'))) return pkg;
  mkdirSync(dir, { recursive: true });
  process.stderr.write(`fetching transformers==${version} from PyPI into ${dir}\n`);
  const pip = runPython(['-m', 'pip', 'download', '--quiet', '--no-deps', '--only-binary=:all:', `transformers==${version}`, '-d', dir], { timeoutMs: 600_000 });
  if (!pip.ok || pip.status !== 0) throw new Error(`pip download of transformers==${version} failed: ${pip.ok ? pip.stderr.trim().split('\n').slice(-2).join(' | ') : pip.error}`);
  const wheel = readdirSync(dir).find((f) => f.endsWith('.whl'));
  if (!wheel) throw new Error(`pip produced no wheel in ${dir}`);
  const unzip = runPython(['-m', 'zipfile', '-e', join(dir, wheel), dir]);
  if (!unzip.ok || unzip.status !== 0) throw new Error(`cannot unpack ${wheel}: ${unzip.ok ? unzip.stderr.trim() : unzip.error}`);
  return pkg;
}

/** The HF-199 ground truth: shipped in fixtures/hf199 (Adopter's published counts, the audited
 *  counts, their README and AUDIT), or $ADOPT_BENCH_DIR. */
export function benchDir(): string {
  const shipped = fileURLToPath(new URL('../../fixtures/hf199', import.meta.url));
  const dir = process.env.ADOPT_BENCH_DIR ?? shipped;
  if (!existsSync(join(dir, 'adopter-hf199-counts.tsv'))) {
    throw new AdoptError(`cannot find adopter-hf199-counts.tsv in ${dir}${process.env.ADOPT_BENCH_DIR ? ' ($ADOPT_BENCH_DIR)' : ''}: the HF-199 ground truth is missing`);
  }
  return resolve(dir);
}

export interface GroundTruthRow { model: string; counts: number[] }

/** Adopter's published counts, or the audited ones (AUDIT.md beside them says what changed). */
export function readGroundTruth(which: 'published' | 'audited' = 'published'): GroundTruthRow[] {
  const name = which === 'audited' ? 'adopter-hf199-counts-audited.tsv' : 'adopter-hf199-counts.tsv';
  if (!existsSync(join(benchDir(), name))) throw new AdoptError(`cannot find ${name} in ${benchDir()}: the HF-199 ground truth is incomplete`);
  const text = readFileSync(join(benchDir(), name), 'utf8');
  const [, ...rows] = text.trim().split('\n');
  return rows.map((r) => {
    const [model, ...counts] = r.split('\t');
    return { model, counts: counts.map(Number) };
  });
}

/** The 199 modeling files, in ground-truth order. */
export function hf199Files(pkg: string): { model: string; file: string }[] {
  return readGroundTruth().map(({ model }) => ({ model, file: join(pkg, 'models', model, `modeling_${model}.py`) }));
}

/** transformers and its pure-Python dependencies for the harness's Python, in the cache; the
 *  directory to put on its PYTHONPATH. */
export function ensurePythonDeps(): string {
  const dir = join(cacheDir(), 'pydeps');
  if (!existsSync(join(dir, 'transformers'))) {
    process.stderr.write(`installing transformers==${TRANSFORMERS_VERSION} for ${pythonExecutable()} into ${dir}\n`);
    const r = spawnSync('bash', [join(NATIVE_DIR, '..', 'scripts', 'setup-python.sh'), '--hf'], { stdio: 'inherit' });
    if (r.status !== 0) throw new Error('could not install transformers for verification');
  }
  return dir;
}
