// Driver of the harness's pair run (native/adopt_harness/check_pair.py): one class of an original
// file against its rewrite, on an input shape the caller gives. Used by `adopt rules test` and
// `adopt verify --class --shape`.
import type { Check } from './results.js';
import { runHarness } from './python.js';

export interface PairOptions {
  model: string;
  /** Sizes of the input tensor. */
  shape: number[] | string;
  dtype?: string;
  /** The adopt_kernels function the rewrite must call (a rule's callee); none: not required. */
  kernel?: string;
  /** JSON object of constructor arguments or config attributes. */
  config?: string;
  timeoutMs?: number;
}

export type PairResult = { ok: true; check: Check } | { ok: false; error: string };

export function checkPair(before: string, after: string, o: PairOptions): PairResult {
  const shape = Array.isArray(o.shape) ? o.shape.join(',') : o.shape;
  const args = [before, after, '--model', o.model, '--shape', shape, '--dtype', o.dtype ?? 'fp32'];
  if (o.kernel) args.push('--kernel', o.kernel);
  if (o.config) args.push('--config', o.config);
  const r = runHarness('pair', args, { timeoutMs: o.timeoutMs ?? 300_000 });
  if (!r.ok) return { ok: false, error: r.error };
  if (r.results.length !== 1) return { ok: false, error: `the pair harness wrote ${r.results.length} results, not one` };
  return { ok: true, check: r.results[0] };
}
