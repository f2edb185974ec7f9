// The HF-199 benchmark end to end (`adopt bench --hf`, `npm run bench:hf`): analyse and rewrite
// every modeling file, score the sites against Adopter's ground truth, and with `verify` run every
// rewritten model against the original in torch (tiny config, strict state-dict load, outputs and
// gradients in eval and train mode). Results are written as they come; a model that hangs or
// crashes the harness is reported with its reason and the run goes on.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { hfVerifier, writeMirror } from '../pipeline/index.js';
import { adopterScores } from './adopter.js';
import { ensurePythonDeps, ensureTransformers, hf199Files, readGroundTruth, TRANSFORMERS_VERSION } from './corpus.js';
import { pct, round } from './format.js';
import { writeHtmlReport } from './report.js';
import { rewriteCorpus, verifyCorpus, type ModelRow } from './run.js';
import { score } from './score.js';
import { printLm, verifyLmHeads } from './hf-lm.js';
import type { FileResult } from '../synth/synthesize.js';

/** A model of HF-199 and what became of it (the report's and the JSON's row). */
export type ModelResult = ModelRow;

export interface HfBenchOptions { version?: string; verify?: boolean; out?: string; report?: string; float32?: boolean }

export async function benchHf(opts: HfBenchOptions = {}) {
  const out = resolve(opts.out ?? 'bench-results');
  mkdirSync(out, { recursive: true });
  const pkg = ensureTransformers(opts.version);
  const models = hf199Files(pkg);
  const t0 = performance.now();
  const run = rewriteCorpus(models, { root: pkg, out, label: 'bench --hf' });
  const { result, rows } = run;
  const rewriteSeconds = result.times.total;
  // the harness imports each rewritten model from a copy of the package, for its relative imports
  const { mirror } = writeMirror(pkg, result.files, out);
  const where = (f: FileResult) => join(mirror, relative(pkg, resolve(f.path)));
  const deps = opts.verify ? ensurePythonDeps() : '';
  const verifySeconds = opts.verify ? await verifyCorpus(run, hfVerifier(join(out, 'hf-verify.jsonl'), deps, !!opts.float32), 'bench --hf', where) : 0;
  // the bare models have no LM head: the lm_head_ce rewrites are checked on the LM classes
  const lm = opts.verify ? await verifyLmHeads(run, hfVerifier(join(out, 'hf-lm-verify.jsonl'), deps, true, 'hf_lm'), where) : null;
  const { cells, perRule } = adopterScores(models, result.plan.program, result.plan.sites, readGroundTruth());
  const total = score(cells);
  const rewritten = rows.filter((r) => r.status !== 'not_rewritten');
  const runnable = rewritten.filter((r) => r.status === 'verified' || r.status === 'mismatch');
  const verified = rewritten.filter((r) => r.status === 'verified');
  const mismatch = rewritten.filter((r) => r.status === 'mismatch');
  const summary = {
    files: models.length, rewritten_models: rewritten.length, runnable: runnable.length, verified: verified.length, mismatch: mismatch.length,
    not_runnable: opts.verify ? rewritten.length - runnable.length : null, runnable_ratio: rewritten.length && opts.verify ? round(runnable.length / rewritten.length) : null,
    verified_ratio_of_runnable: runnable.length ? round(verified.length / runnable.length) : null,
    // models whose verified run went through at least one compiled kernel (float32 runs only:
    // the compiled kernels never take float64)
    verify_dtype: opts.verify ? (opts.float32 ? 'float32' : 'float64 where the model runs in it') : null,
    compiled_kernel_models: verified.filter((r) => (r.compiled_calls ?? 0) > 0).length,
    compiled_calls: verified.reduce((n, r) => n + (r.compiled_calls ?? 0), 0),
    precision: round(total.precision), recall: round(total.recall),
    seconds: round((performance.now() - t0) / 1000), rewrite_seconds: round(rewriteSeconds), verify_seconds: round(verifySeconds), verified_run: !!opts.verify,
    ...(lm?.summary ?? {}),
  };
  const stages = { ...result.times, verify: verifySeconds, verify_lm_heads: lm?.summary.lm_verify_seconds ?? 0 };
  writeFileSync(join(out, 'hf.json'), JSON.stringify({ summary, per_rule: perRule, stage_seconds: stages, models: rows, lm_head_models: lm?.rows ?? [] }, null, 1));
  const report = resolve(opts.report ?? join(out, 'hf-report.html'));
  writeHtmlReport(report, { title: `adopt on HF-199 (transformers ${opts.version ?? TRANSFORMERS_VERSION})`, summary, rows, sites: result.sites, perRule, stages, verified: !!opts.verify, out });
  return { summary, rows, perRule, report, lm };
}

export function printHf(r: Awaited<ReturnType<typeof benchHf>>): void {
  console.log('rule                      P       R      tp   fp   fn');
  for (const [rule, s] of Object.entries(r.perRule)) console.log(`${rule.padEnd(24)} ${pct(s.precision)} ${pct(s.recall)} ${String(s.tp).padStart(5)}${String(s.fp).padStart(5)}${String(s.fn).padStart(5)}`);
  console.log(`total (rules 4-9)        ${pct(r.summary.precision)} ${pct(r.summary.recall)}\n`);
  console.log('model                               sites  status         reason');
  for (const m of r.rows) if (m.status !== 'not_rewritten') console.log(`${m.model.padEnd(36)}${String(m.sites ?? 0).padStart(5)}  ${m.status.padEnd(13)}  ${(m.reason ?? (m.problems ?? []).join('; ')).slice(0, 90)}`);
  const s = r.summary;
  if (r.lm) printLm(r.lm.summary, r.lm.rows);
  console.log(`\n${s.rewritten_models} models rewritten; ${s.verified_run ? `runnable ${s.runnable} (${((s.runnable_ratio ?? 0) * 100).toFixed(1)}%), verified ${s.verified}, mismatch ${s.mismatch}` : 'not verified (--verify)'}; ${s.seconds}s; report ${r.report}`);
  console.log(JSON.stringify(s));
}


if (process.argv[1]?.endsWith('hf.js')) {
  benchHf({ verify: process.argv.includes('--verify'), float32: process.argv.includes('--float32') }).then(printHf, (e: Error) => { process.stderr.write(`bench:hf: ${e.message}\n`); process.exitCode = 2; });
}
