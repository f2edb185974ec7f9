// The harness's results as TypeScript reads them. Their shapes are defined once, in Python
// (native/adopt_harness/schema.py), exported as JSON Schema (results.schema.json); every line read
// from a harness is validated against it here, so a malformed result is an error naming the
// harness and the field, never a cast that lets it through.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { NATIVE_DIR } from './native.js';
import { validate, type Schema } from './schema.js';

export type Harness = 'pair' | 'file' | 'hf' | 'hf_lm' | 'speed';
export type CheckStatus = 'verified' | 'mismatch' | 'not_runnable';

export interface Timing { original_s: number; rewritten_s: number; ratio?: number | null; ratio_best?: number | null; compiled_calls?: number }

/** What the fast-path counter saw while the rewrite ran: calls into adopt_kernels, SDPA calls and
 *  compiled kernel calls (per kernel). fast_path_calls is -1 where adopt_kernels does not import. */
export interface Counts { fast_path_calls?: number; sdpa_calls?: number; compiled_calls?: number; compiled_kernels?: Record<string, number> }

/** The float32 pass of a file run with `kernels`: the compiled kernels' check. */
export interface KernelPass extends Counts {
  status: CheckStatus; dtype: string; problems?: string[]; notes?: string[]; max_abs?: number; max_rel?: number; tolerance?: number;
}

/** One model class compared with its rewrite (pair and HF runs, and each class of a file run). */
export interface Check extends Counts {
  status: CheckStatus;
  /** File runs: whether the rewrite's own code ran in this class; a class where it did not
   *  compared the original code with itself. */
  exercised?: boolean;
  kernel_pass?: KernelPass;
  /** Training steps taken by the optimizers the model builds for itself, compared after each. */
  optimizer_steps?: number;
  problems?: string[];
  reason?: string;
  notes?: string[];
  class?: string;
  variant?: string;
  model?: string;
  inputs?: string;
  config?: string;
  dtype?: string;
  max_abs?: number;
  max_rel?: number;
  tolerance?: number;
  strict_load?: boolean;
  seconds?: number;
  timings?: Record<string, Timing>;
}

export interface FileResult { results: Check[]; torch: string; error?: string }

export interface Agreement extends Counts { error_vs_fp32_original: number; error_vs_fp32_rewritten: number }

export interface SpeedEntry {
  forward_original_s: number; forward_rewritten_s: number; forward_ratio: number;
  train_original_s: number; train_rewritten_s: number; train_ratio: number;
  per_rule: Record<string, { forward_ratio: number; train_ratio: number; memory_ratio?: number }>;
  memory_ratio: number | null;
  peak_original_bytes?: number; peak_rewritten_bytes?: number;
  profile?: { original: { non_matmul_share: number | null }; removed_of_non_matmul?: number | null } & Record<string, unknown>;
  /** the ratio rewritten/original round by round: its median and quartiles */
  paired?: { forward: PairedRatio; train: PairedRatio };
  /** per kernel switched off (`--without`): the rewrite without it over the rewrite, round by round */
  without?: Record<string, { train_paired_over_rewritten: PairedRatio; forward_paired_over_rewritten: PairedRatio; train_over_original: number }>;
}

/** speed.paired_ratio: the median and quartiles of the per-round ratios, over an even number of
 *  rounds; how many found the variant slower, and the one-sided sign test's chance of that many */
export interface PairedRatio { median: number; q1: number; q3: number; rounds: number; slower_rounds: number; p_slower: number }

/** One model of a speed run; its entries are keyed seq<N> or image<N>, agreements agreement_seq<N>. */
export interface SpeedRow {
  model: string; device?: string; dtype?: string; threads?: number; clock?: string; malloc?: string; idle_threads?: string; dropout?: string; blas?: string; rules?: string[]; sdpa_alternative?: string; error?: string;
  [entry: string]: SpeedEntry | Agreement | string | number | string[] | undefined;
}

/** The timed entries of a speed row (keys seq<N>, image<N>), which the schema validated as SpeedEntry. */
export function speedEntries(row: SpeedRow): [string, SpeedEntry][] {
  return Object.entries(row).filter(([k]) => /^(seq\d+|image\d+)$/.test(k)).map(([k, v]) => [k, v as SpeedEntry]);
}

export interface ResultOf { pair: Check; file: FileResult; hf: Check; hf_lm: Check; speed: SpeedRow }

export type Progress = Record<string, unknown> & { model?: string; status?: string; message?: string };

export type Line<H extends Harness> = { kind: 'progress'; progress: Progress } | { kind: 'result'; result: ResultOf[H] };

export const SCHEMA_PATH = join(NATIVE_DIR, 'adopt_harness', 'results.schema.json');

let loaded: Schema | null = null;

export function resultSchema(): Schema {
  loaded ??= JSON.parse(readFileSync(SCHEMA_PATH, 'utf8')) as Schema;
  return loaded;
}

/** A harness's stdout line read and validated: the envelope, then its payload against the
 *  harness's result definition. Throws an Error naming the harness and the field. */
export function readLine<H extends Harness>(harness: H, line: string): Line<H> {
  let value: unknown;
  try { value = JSON.parse(line); } catch { throw new Error(`harness ${harness}: not a JSON line: ${line.slice(0, 120)}`); }
  const schema = resultSchema();
  const envelope = validate(value, schema, schema, 'line');
  if (envelope) throw new Error(`harness ${harness}: malformed line: ${envelope}`);
  const e = value as { harness: string; kind: 'progress' | 'result'; progress?: Progress; result?: unknown };
  if (e.harness !== harness) throw new Error(`harness ${harness}: the line comes from the ${e.harness} harness`);
  if (e.kind === 'progress') return { kind: 'progress', progress: e.progress ?? {} };
  const def = (schema['x-results'] as Record<Harness, string>)[harness];
  const why = validate(e.result, { $ref: `#/$defs/${def}` }, schema, 'result');
  if (why) throw new Error(`harness ${harness}: malformed result: ${why}`);
  return { kind: 'result', result: e.result as ResultOf[H] };
}
