// Driver of the harness's file mode (native/adopt_harness/verify_file.py): one original file
// against one or more rewritten variants of it, every model class built tiny and fed inputs the
// harness finds by itself. Used by `adopt verify` without --class and by `rewrite --verify`.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { runHarness } from './python.js';
import type { Check, Timing } from './results.js';

export type { Check as ClassResult, CheckStatus as ClassStatus, Timing } from './results.js';

export interface FileCheck { ok: true; results: Check[]; torch: string }
export type FileCheckResult = FileCheck | { ok: false; error: string };

export interface FileCheckOptions {
  classes?: string[];
  /** JSON object of constructor arguments or config attributes. */
  config?: string;
  /** Input shape of a class's first input (class name → "2,7,32"), where the harness would not
   *  find one: it is the only input tried for that class. */
  shapes?: Record<string, string>;
  dtype?: 'fp32' | 'fp64';
  /** After a float64 pass that matched, each class again in float32, where the compiled kernels
   *  run (float64 runs the torch code they replace). */
  kernels?: boolean;
  /** Median of this many timed repeats of forward and training step; 0 times nothing. */
  repeats?: number;
  timeoutMs?: number;
}

/** Checks rewritten texts of `original` (name → source text) in one harness run. */
export function checkVariants(original: string, variants: Record<string, string>, opts: FileCheckOptions = {}): FileCheckResult {
  const dir = mkdtempSync(join(tmpdir(), 'adopt-verify-'));
  try {
    const paths: Record<string, string> = {};
    for (const [name, text] of Object.entries(variants)) {
      paths[name] = join(dir, `${name}-${basename(original)}`);
      writeFileSync(paths[name], text);
    }
    return checkPaths(original, paths, opts);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Like checkVariants, for rewritten files already on disk; with `ownPackage` each is imported in
 *  the package its own path is in (a rewritten copy of the original's package). */
export function checkPaths(original: string, variants: Record<string, string>, opts: FileCheckOptions & { ownPackage?: boolean } = {}): FileCheckResult {
  const args = [original];
  for (const [name, path] of Object.entries(variants)) args.push('--variant', `${name}=${path}`);
  if (opts.ownPackage) args.push('--own-package');
  if (opts.kernels) args.push('--kernels');
  if (opts.classes?.length) args.push('--classes', opts.classes.join(','));
  if (opts.config) args.push('--config', opts.config);
  for (const [name, shape] of Object.entries(opts.shapes ?? {})) args.push('--shape', `${name}=${shape}`);
  args.push('--dtype', opts.dtype ?? 'fp64', '--repeats', String(opts.repeats ?? 0));
  const r = runHarness('file', args, { timeoutMs: opts.timeoutMs ?? 600_000 });
  if (!r.ok) return { ok: false, error: r.error };
  const [v] = r.results;
  if (!v || r.results.length !== 1) return { ok: false, error: `the file harness wrote ${r.results.length} results, not one` };
  if (v.error) return { ok: false, error: v.error };
  return { ok: true, results: v.results, torch: v.torch };
}

/** Forward and train ratios (rewritten / original) over the classes that ran, as medians. */
export function speedOf(results: Check[]): { forward: number; train: number; forwardBest: number; trainBest: number; compiledCalls: number } | null {
  const timed = results.filter((r) => r.status === 'verified' && r.timings?.forward?.ratio && r.timings.train?.ratio);
  if (!timed.length) return null;
  const med = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };
  const best = (t: Timing) => t.ratio_best ?? t.ratio!;
  return {
    forward: med(timed.map((r) => r.timings!.forward.ratio!)), train: med(timed.map((r) => r.timings!.train.ratio!)),
    forwardBest: med(timed.map((r) => best(r.timings!.forward))), trainBest: med(timed.map((r) => best(r.timings!.train))),
    // compiled kernel calls the rewrite made at the timed sizes (a forward and a training step)
    compiledCalls: timed.reduce((n, r) => n + (r.timings!.forward.compiled_calls ?? 0) + (r.timings!.train.compiled_calls ?? 0), 0),
  };
}
