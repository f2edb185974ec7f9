// The LM-head half of `bench:hf --verify`. The bare models hf_verify compares (GPT2Model) have no
// head and no loss, so the lm_head_ce rewrites would go unchecked there: every file where that rule
// rewrote a site is verified again on its causal or masked LM class (GPT2LMHeadModel,
// BertForMaskedLM), fed labels, in float32 (adopt_harness.hf_lm_verify). Loss, logits and every
// gradient are compared, and a model counts as verified only when the compiled fused linear +
// cross-entropy kernel ran in it.
import { resolve } from 'node:path';
import { verifyModels, type ModelVerdict, type Verifier, type VerifyTarget } from '../pipeline/index.js';
import type { FileResult } from '../synth/synthesize.js';
import { round } from './format.js';
import { Progress } from './progress.js';
import type { CorpusRun, ModelRow } from './run.js';

/** The rule whose rewrites this checks, and the compiled kernel its rewrite calls. */
export const LM_RULE = 'lm_head_ce';
export const FUSED_KERNEL = 'linear_cross_entropy';

/** verified: equal to the original and the fused kernel ran; kernel_not_run: equal, but the
 *  original code path was what ran, so the rewrite is not shown to be right. */
export type LmStatus = 'verified' | 'kernel_not_run' | 'mismatch' | 'not_runnable';

export interface LmRow {
  model: string;
  status: LmStatus;
  /** The LM class compared. */
  class?: string;
  /** Calls of the compiled fused kernel during the rewritten model's runs. */
  fused_calls: number;
  reason?: string;
  problems?: string[];
  max_abs?: number;
  seconds?: number;
}

/** Prefixed, as they sit beside the bare models' counts in bench:hf's summary. */
export interface LmSummary { lm_head_rewritten: number; lm_runnable: number; lm_verified: number; lm_kernel_not_run: number; lm_mismatch: number; lm_fused_calls: number; lm_verify_seconds: number }

/** Models whose file had an lm_head_ce site rewritten. */
export function lmHeadModels(rows: ModelRow[]): string[] {
  return rows.filter((r) => r.status !== 'not_rewritten' && (r.rules?.[LM_RULE]?.rewritten ?? 0) > 0).map((r) => r.model);
}

/** One LM verdict as a row: a verified comparison in which the fused kernel never ran is not a
 *  verification of the rewrite. */
export function lmRow(v: ModelVerdict): LmRow {
  const fused = v.compiled_kernels?.[FUSED_KERNEL] ?? 0;
  const status: LmStatus = v.status === 'verified' && fused === 0 ? 'kernel_not_run' : v.status;
  const row: LmRow = { model: v.model, status, fused_calls: fused };
  if (v.class) row.class = v.class;
  if (v.reason) row.reason = v.reason;
  if (v.problems?.length) row.problems = v.problems;
  if (v.max_abs !== undefined) row.max_abs = v.max_abs;
  if (v.seconds !== undefined) row.seconds = v.seconds;
  if (status === 'kernel_not_run') row.reason = `the compiled ${FUSED_KERNEL} kernel did not run in ${v.class ?? 'the LM class'}`;
  return row;
}

export function summarizeLm(rows: LmRow[], seconds: number): LmSummary {
  const count = (s: LmStatus) => rows.filter((r) => r.status === s).length;
  return {
    lm_head_rewritten: rows.length,
    lm_runnable: rows.filter((r) => r.status !== 'not_runnable').length,
    lm_verified: count('verified'), lm_kernel_not_run: count('kernel_not_run'), lm_mismatch: count('mismatch'),
    lm_fused_calls: rows.reduce((n, r) => n + r.fused_calls, 0),
    lm_verify_seconds: round(seconds),
  };
}

/** Every lm_head_ce-rewritten model of `run` through `verifier` (the hf_lm harness); `where` names
 *  a model's rewrite on disk. */
export async function verifyLmHeads(run: CorpusRun, verifier: Verifier, where: (f: FileResult) => string): Promise<{ rows: LmRow[]; summary: LmSummary }> {
  const targets: VerifyTarget[] = lmHeadModels(run.rows).map((model) => {
    const f = run.changed.get(model);
    if (!f) throw new Error(`${model} has ${LM_RULE} rewrites but no rewritten file`);
    const owners = run.result.sites.filter((s) => s.rule === LM_RULE && s.decision === 'rewritten' && resolve(s.file) === resolve(f.path)).map((s) => s.owner);
    return { model, original: f.path, rewrittenText: f.rewritten, rewrittenPath: where(f), classes: [...new Set(owners)] };
  });
  const { verdicts, seconds } = await verifyModels(targets, verifier, new Progress('bench --hf: verifying LM heads'));
  const rows = targets.map((t) => lmRow(verdicts.get(t.model) as ModelVerdict));
  return { rows, summary: summarizeLm(rows, seconds) };
}

export function printLm(s: LmSummary, rows: LmRow[]): void {
  console.log(`\nLM heads (${LM_RULE} rewritten, LM class with labels, float32)`);
  for (const r of rows) console.log(`${r.model.padEnd(24)} ${(r.class ?? '').padEnd(48)} ${r.status.padEnd(15)}${String(r.fused_calls).padStart(4)}  ${(r.reason ?? (r.problems ?? []).join('; ')).slice(0, 80)}`);
  console.log(`${s.lm_head_rewritten} models with ${LM_RULE} rewritten; runnable ${s.lm_runnable}, verified ${s.lm_verified} (${FUSED_KERNEL} ran: ${s.lm_fused_calls} calls), kernel not run ${s.lm_kernel_not_run}, mismatch ${s.lm_mismatch}; ${s.lm_verify_seconds}s`);
}
