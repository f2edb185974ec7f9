// The HF-199 benchmark end to end (`adopt bench --hf`, `npm run bench:hf`): analyse and rewrite
// every modeling file, score the sites against Adopter's ground truth, and with `verify` run every
// rewritten model against the original in torch (tiny config, strict state-dict load, outputs and
// gradients in eval and train mode). Results are written as they come; a model that hangs or
// crashes the harness is reported with its reason and the run goes on.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { streamHarness } from '../verify/python.js';
import type { Check } from '../verify/results.js';
import { adopterScores } from './adopter.js';
import { ensurePythonDeps, ensureTransformers, hf199Files, readGroundTruth, TRANSFORMERS_VERSION } from './corpus.js';
import { Progress } from './progress.js';
import { writeHtmlReport } from './report.js';
import { rewriteAll, writeMirror } from './rewrite.js';
import { score } from './score.js';
import { pct, round } from './format.js';

const CHUNK = 25;

/** A model's line in the report: the harness's check, or why it was not verified. */
export interface ModelResult extends Omit<Check, 'status'> {
  model: string;
  status: Check['status'] | 'not_verified' | 'not_rewritten';
  sites?: number;
}

export interface HfBenchOptions { version?: string; verify?: boolean; out?: string; report?: string; float32?: boolean }

/** One harness process per chunk of models; each model's result is written to `jsonl` as it comes,
 *  so a run cut short keeps what it measured. */
async function verifyChunk(chunk: { model: string; file: string }[], jsonl: string, deps: string, progress: Progress, float32: boolean): Promise<ModelResult[]> {
  const reported = new Map<string, ModelResult>();
  const write = (r: ModelResult) => { writeFileSync(jsonl, `${JSON.stringify(r)}\n`, { flag: 'a' }); reported.set(r.model, r); progress.tick(r.model); };
  const run = await streamHarness('hf', chunk.map((m) => `${m.model}=${m.file}`), {
    pythonPath: [deps], timeoutMs: 90_000 * chunk.length,
    env: { OMP_NUM_THREADS: '2', ...(float32 ? { ADOPT_VERIFY_DTYPE: 'float32' } : {}) },
    onResult: (r) => write({ ...r, model: r.model ?? '' }),
  });
  // the harness process died (crash, out of memory, timeout) or wrote a malformed line: what it
  // did not report is not runnable, with that reason
  const why = run.ok ? 'the harness wrote no result for it' : run.error;
  for (const m of chunk.filter((x) => !reported.has(x.model))) write({ model: m.model, status: 'not_runnable', reason: why.slice(0, 300) });
  return [...reported.values()];
}

export async function benchHf(opts: HfBenchOptions = {}) {
  const out = resolve(opts.out ?? 'bench-results');
  const pkg = ensureTransformers(opts.version);
  const models = hf199Files(pkg);
  const t0 = performance.now();
  const run = rewriteAll(models.map((m) => m.file), pkg);
  const rewriteSeconds = (performance.now() - t0) / 1000;
  const { mirror, changed } = writeMirror(pkg, run.synth.files, out);
  const changedSet = new Set(changed.map((f) => resolve(f.path)));
  const sitesPer = (file: string) => run.synth.sites.filter((s) => resolve(s.file) === resolve(file) && s.decision === 'rewritten').length;
  const { cells, perRule } = adopterScores(models, run.program, run.matched.sites, readGroundTruth());
  const total = score(cells);

  mkdirSync(out, { recursive: true });
  const jsonl = join(out, 'hf-verify.jsonl');
  let verifySeconds = 0;
  const checked: ModelResult[] = [];
  if (opts.verify) {
    rmSync(jsonl, { force: true });
    const toVerify = models.filter((m) => changedSet.has(resolve(m.file))).map((m) => ({ model: m.model, file: join(mirror, 'models', m.model, `modeling_${m.model}.py`) }));
    const deps = ensurePythonDeps();
    const progress = new Progress('verifying', toVerify.length);
    const t1 = performance.now();
    for (let i = 0; i < toVerify.length; i += CHUNK) checked.push(...await verifyChunk(toVerify.slice(i, i + CHUNK), jsonl, deps, progress, !!opts.float32));
    progress.end();
    verifySeconds = (performance.now() - t1) / 1000;
  }
  const byModel = new Map(checked.map((r) => [r.model, r]));
  const rows: ModelResult[] = models.map((m) => {
    const isChanged = changedSet.has(resolve(m.file));
    const r = byModel.get(m.model) ?? { model: m.model, status: (isChanged ? (opts.verify ? 'not_runnable' : 'not_verified') : 'not_rewritten') as ModelResult['status'], reason: isChanged ? (opts.verify ? 'no result' : 'run with --verify to verify') : 'no site rewritten' };
    return { ...r, sites: sitesPer(m.file) };
  });
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
  };
  const stages = { ...run.times, verify: verifySeconds };
  writeFileSync(join(out, 'hf.json'), JSON.stringify({ summary, per_rule: perRule, stage_seconds: stages, models: rows }, null, 1));
  const report = resolve(opts.report ?? join(out, 'hf-report.html'));
  writeHtmlReport(report, { title: `adopt on HF-199 (transformers ${opts.version ?? TRANSFORMERS_VERSION})`, summary, rows, sites: run.synth.sites, perRule, stages });
  return { summary, rows, perRule, report };
}

export function printHf(r: Awaited<ReturnType<typeof benchHf>>): void {
  console.log('rule                      P       R      tp   fp   fn');
  for (const [rule, s] of Object.entries(r.perRule)) console.log(`${rule.padEnd(24)} ${pct(s.precision)} ${pct(s.recall)} ${String(s.tp).padStart(5)}${String(s.fp).padStart(5)}${String(s.fn).padStart(5)}`);
  console.log(`total (rules 4-9)        ${pct(r.summary.precision)} ${pct(r.summary.recall)}\n`);
  console.log('model                               sites  status         reason');
  for (const m of r.rows) if (m.status !== 'not_rewritten') console.log(`${m.model.padEnd(36)}${String(m.sites ?? 0).padStart(5)}  ${m.status.padEnd(13)}  ${(m.reason ?? (m.problems ?? []).join('; ')).slice(0, 90)}`);
  const s = r.summary;
  console.log(`\n${s.rewritten_models} models rewritten; ${s.verified_run ? `runnable ${s.runnable} (${((s.runnable_ratio ?? 0) * 100).toFixed(1)}%), verified ${s.verified}, mismatch ${s.mismatch}` : 'not verified (--verify)'}; ${s.seconds}s; report ${r.report}`);
  console.log(JSON.stringify(s));
}


if (process.argv[1]?.endsWith('hf.js')) {
  benchHf({ verify: process.argv.includes('--verify'), float32: process.argv.includes('--float32') }).then(printHf, (e: Error) => { process.stderr.write(`bench:hf: ${e.message}\n`); process.exitCode = 2; });
}
