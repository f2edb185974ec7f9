// Verification that classifies without dropping (`bench DIR --verify`, `bench --hf --verify`):
// every rewritten file is checked whole against its original and gets one verdict. Two verifiers
// share the loop: one file at a time through the file harness (any directory), or the HF harness
// on chunks of transformers models (configs and inputs of the HF model zoo).
import { rmSync, writeFileSync } from 'node:fs';
import { streamHarness } from '../verify/python.js';
import { checkFile, verdictOf, type Verdict } from './check.js';
import { clipWords } from '../text-clip.js';

/** One model to verify: its name, the original file and the rewritten text (and where it is on
 *  disk, for a verifier that imports it from a rewritten copy of its package). */
export interface VerifyTarget {
  model: string; original: string; rewrittenText: string; rewrittenPath?: string;
  /** The classes to compare (the HF LM harness: those whose code was rewritten). */
  classes?: string[];
}

/** A verdict, with what the HF harness also reports. */
export interface ModelVerdict extends Verdict {
  model: string;
  fast_path_calls?: number;
  compiled_calls?: number;
  /** Compiled-kernel calls per kernel (registry name). */
  compiled_kernels?: Record<string, number>;
  /** The model class compared. */
  class?: string;
  max_abs?: number;
  seconds?: number;
}

/** Verifies targets, calling `tick` once per target as its verdict comes. */
export type Verifier = (targets: VerifyTarget[], tick: (model: string) => void) => Promise<ModelVerdict[]>;

export interface VerifyProgress { start(total: number): void; tick(model: string): void; end(): void }

/** Every target through `verifier`; verdicts by model name, and the seconds it took. */
export async function verifyModels(targets: VerifyTarget[], verifier: Verifier, progress: VerifyProgress): Promise<{ verdicts: Map<string, ModelVerdict>; seconds: number }> {
  const t0 = performance.now();
  progress.start(targets.length);
  const verdicts = await verifier(targets, (m) => progress.tick(m));
  progress.end();
  const byModel = new Map(verdicts.map((v) => [v.model, v]));
  // a target the verifier gave no verdict for was not verified, and says so
  for (const t of targets) if (!byModel.has(t.model)) byModel.set(t.model, { model: t.model, status: 'not_runnable', reason: 'no result' });
  return { verdicts: byModel, seconds: (performance.now() - t0) / 1000 };
}

/** The file harness, one file at a time (timed over `repeats`). */
export function fileVerifier(repeats: number): Verifier {
  return async (targets, tick) => targets.map((t) => {
    const v = { model: t.model, ...verdictOf(checkFile(t.original, { rewritten: t.rewrittenText }, { repeats })) };
    tick(t.model);
    return v;
  });
}

const CHUNK = 25;

/** MODEL=PATH, or MODEL:CLASS,...=PATH for a target naming its classes. */
const harnessArg = (m: VerifyTarget) => `${m.model}${m.classes?.length ? `:${m.classes.join(',')}` : ''}=${m.rewrittenPath}`;

/** One HF harness process per chunk of models; each model's result line is validated and
 *  appended to `jsonl` as it comes, so a run that dies keeps what it did. */
async function verifyChunk(harness: HfHarness, chunk: VerifyTarget[], jsonl: string, deps: string, float32: boolean, tick: (model: string) => void): Promise<ModelVerdict[]> {
  const reported = new Map<string, ModelVerdict>();
  const write = (v: ModelVerdict) => { writeFileSync(jsonl, `${JSON.stringify(v)}\n`, { flag: 'a' }); reported.set(v.model, v); tick(v.model); };
  const run = await streamHarness(harness, chunk.map(harnessArg), {
    pythonPath: [deps], timeoutMs: 90_000 * chunk.length,
    env: { OMP_NUM_THREADS: '2', ...(float32 ? { ADOPT_VERIFY_DTYPE: 'float32' } : {}) },
    onResult: (r) => write({ ...r, model: r.model ?? '', status: r.status }),
  });
  // the harness process died (crash, out of memory, timeout) or wrote a malformed line: what it did
  // not report is not runnable, with that reason
  const why = run.ok ? 'the harness wrote no result for it' : run.error;
  for (const m of chunk.filter((x) => !reported.has(x.model))) write({ model: m.model, status: 'not_runnable', reason: clipWords(why, 300) });
  return [...reported.values()];
}

/** Which model class of a transformers file the HF harness compares: the bare model (hf_verify),
 *  or the causal/masked LM class fed labels, in float32 (hf_lm_verify). */
export type HfHarness = 'hf' | 'hf_lm';

/** The HF harness (adopt_harness.hf_verify, or hf_lm_verify) on chunks of models, each imported
 *  from the rewritten copy of its package (`rewrittenPath`); results are appended to `jsonl` as
 *  they come. `deps`: the Python dependencies' path. */
export function hfVerifier(jsonl: string, deps: string, float32: boolean, harness: HfHarness = 'hf'): Verifier {
  return async (targets, tick) => {
    const nowhere = targets.find((t) => !t.rewrittenPath);
    if (nowhere) throw new Error(`the HF harness imports the rewrite from disk, and ${nowhere.model} has no rewritten path`);
    rmSync(jsonl, { force: true });
    const out: ModelVerdict[] = [];
    for (let i = 0; i < targets.length; i += CHUNK) out.push(...await verifyChunk(harness, targets.slice(i, i + CHUNK), jsonl, deps, float32, tick));
    return out;
  };
}
