// What bench:real's verification needs before the first file: the torch 2.x interpreter (checked
// before the long scoring pass, so a missing one is said at once), the warm interpreter its
// harness launches fork from, and the verdict cache with the context its keys are made of.
import { join } from 'node:path';
import { NATIVE_DIR } from '../verify/native.js';
import { warmLaunches } from '../verify/forkserver.js';
import { cacheDir } from './corpus.js';
import { harnessHash, VerdictCache, type VerdictContext } from './real-verdict-cache.js';
import { HARNESS_OPTIONS, verifyPython } from './real-verify.js';

/** Where verdicts are kept unless --cache says otherwise. */
export const defaultVerdictCache = (): string => join(cacheDir(), 'real-verify', 'verdicts.jsonl');

export interface VerifySetupOptions {
  root: string;
  python?: string;
  /** The verdict cache file; null: no cache (--no-cache). */
  cache: string | null;
  /** The model files the run may verify: the warm interpreter imports them once. */
  files: string[];
}

export interface Verification {
  ok: true;
  torch: string;
  cache?: VerdictCache;
  context: VerdictContext;
  /** Starts the warm interpreter, once, before the first verification the cache does not answer
   *  (a run the cache answers entirely never imports torch). */
  warm: () => Promise<void>;
  stop: () => Promise<void>;
}

export type VerifySetup = Verification | { ok: false; error: string };

/** The verdict cache at `path`, saying how many verdicts it holds. */
export function openVerdictCache(path: string): VerdictCache {
  const cache = new VerdictCache(path);
  const skipped = cache.skippedLines;
  console.error(`bench:real: verdict cache ${path}: ${cache.size} verdicts${skipped.length ? ` (${skipped.length} unreadable lines skipped: ${skipped.slice(0, 3).map((n) => `${path}:${n}`).join(', ')})` : ''}`);
  return cache;
}

/** The context every cached verdict is keyed by: the harness and kernel sources, the interpreter
 *  and its torch, and the harness options. */
export function verdictContext(python: string, torch: string): VerdictContext {
  const harness = harnessHash([join(NATIVE_DIR, 'adopt_harness'), join(NATIVE_DIR, 'adopt_kernels')]);
  const options = JSON.stringify({ ...HARNESS_OPTIONS, timeout_s: process.env.ADOPT_VERIFY_TIMEOUT ?? '60' });
  return { harness, python, torch, options };
}

/** Starts the warm interpreter with torch and the run's model files imported (each check is then a
 *  fork that imports only the rewrite); without one, each check starts its own interpreter. */
function warmOnce(files: string[]): Pick<Verification, 'warm' | 'stop'> {
  let started: Promise<() => Promise<void>> | undefined;
  const warm = async () => {
    started ??= (async () => {
      const t0 = performance.now();
      const w = await warmLaunches('torch,numpy', files);
      if ('error' in w) {
        console.error(`bench:real: no warm Python (${w.error}); each verification starts its own interpreter`);
        return async () => {};
      }
      console.error(`bench:real: warm Python with ${files.length} model files imported in ${((performance.now() - t0) / 1000).toFixed(0)}s`);
      for (const note of w.notes) console.error(`bench:real: warm Python: ${note}`);
      return w.stop;
    })();
    await started;
  };
  return { warm, stop: async () => { if (started) await (await started)(); } };
}

/** The interpreter, the cache and the (lazily started) warm server; or why verification cannot run. */
export function setUpVerification(o: VerifySetupOptions): VerifySetup {
  const python = verifyPython(o.root, o.python);
  if ('error' in python) return { ok: false, error: python.error };
  console.error(`bench:real: verifying with ${python.path} (torch ${python.torch})`);
  process.env.ADOPT_PYTHON = python.path;
  // tiny models gain nothing from a second thread, and on a busy machine OpenMP's waiting threads
  // cost several times the work itself (a BERT file: 8.3 CPU s with two threads, 1.3 with one);
  // set before the warm interpreter starts, which reads it once
  process.env.OMP_NUM_THREADS ??= '1';
  const cache = o.cache === null ? undefined : openVerdictCache(o.cache);
  return { ok: true, torch: python.torch, cache, context: verdictContext(python.path, python.torch), ...warmOnce(o.files) };
}
