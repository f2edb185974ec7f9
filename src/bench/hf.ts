// bench:hf — HF-199 end to end: analyse and rewrite every modeling file, and with --verify run
// every rewritten model against the original in torch (tiny config, strict state-dict load,
// outputs and gradients in eval and train mode). Results are written as they come; a model that
// hangs or crashes the harness is reported with its reason and the run goes on.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { NATIVE_DIR, pythonExecutable } from '../verify/python.js';
import { cacheDir, ensureTransformers, hf199Files } from './corpus.js';
import { writeHtmlReport } from './report.js';
import { rewriteAll, writeMirror } from './rewrite.js';

const OUT = 'bench-results';
const CHUNK = 25;

export interface ModelResult {
  model: string;
  status: 'verified' | 'mismatch' | 'not_runnable' | 'not_rewritten';
  reason?: string;
  problems?: string[];
  fast_path_calls?: number;
  max_abs?: number;
  timings?: Record<string, { original_s: number; rewritten_s: number }>;
  seconds?: number;
  sites?: number;
}

function pydeps(): string {
  const dir = join(cacheDir(), 'pydeps');
  if (!existsSync(join(dir, 'transformers'))) {
    process.stderr.write(`installing transformers==4.35.0 for ${pythonExecutable()} into ${dir}\n`);
    const r = spawnSync('bash', [resolve('scripts/setup-python.sh'), '--hf'], { stdio: 'inherit' });
    if (r.status !== 0) throw new Error('could not install transformers for verification');
  }
  return dir;
}

function verifyModels(models: { model: string; file: string }[], jsonl: string): void {
  const deps = pydeps();
  for (let i = 0; i < models.length; i += CHUNK) {
    const chunk = models.slice(i, i + CHUNK);
    const r = spawnSync(pythonExecutable(), ['-m', 'adopt_harness.hf_verify', jsonl, ...chunk.map((m) => `${m.model}=${m.file}`)], {
      encoding: 'utf8', timeout: 90_000 * chunk.length, maxBuffer: 1 << 26,
      env: { ...process.env, PYTHONPATH: [NATIVE_DIR, deps].join(':'), PYTHONDONTWRITEBYTECODE: '1', OMP_NUM_THREADS: '2' },
    });
    const done = new Set(readJsonl(jsonl).map((x) => x.model));
    const lost = chunk.filter((m) => !done.has(m.model));
    if (lost.length) {
      // the harness process died (crash, out of memory): the models it did not report are not runnable
      const why = r.error ? r.error.message : `harness exited with ${r.status ?? r.signal}: ${(r.stderr ?? '').trim().split('\n').slice(-1)[0] ?? ''}`;
      for (const m of lost) writeFileSync(jsonl, `${JSON.stringify({ model: m.model, status: 'not_runnable', reason: why.slice(0, 300) })}\n`, { flag: 'a' });
    }
    process.stderr.write(`\rverified ${Math.min(i + CHUNK, models.length)}/${models.length}`);
  }
  process.stderr.write('\n');
}

function readJsonl(path: string): ModelResult[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as ModelResult);
}

function main(): void {
  const verify = process.argv.includes('--verify');
  const pkg = ensureTransformers();
  const models = hf199Files(pkg);
  const t0 = performance.now();
  const run = rewriteAll(models.map((m) => m.file), pkg);
  const rewriteSeconds = (performance.now() - t0) / 1000;
  const { mirror, changed } = writeMirror(pkg, run.synth.files);
  const changedSet = new Set(changed.map((f) => resolve(f.path)));
  const sitesPer = (file: string) => run.synth.sites.filter((s) => resolve(s.file) === resolve(file) && s.decision === 'rewritten').length;

  mkdirSync(OUT, { recursive: true });
  const jsonl = join(OUT, 'hf-verify.jsonl');
  let results: ModelResult[] = [];
  let verifySeconds = 0;
  if (verify) {
    rmSync(jsonl, { force: true });
    const toVerify = models.filter((m) => changedSet.has(resolve(m.file))).map((m) => ({ model: m.model, file: join(mirror, 'models', m.model, `modeling_${m.model}.py`) }));
    const t1 = performance.now();
    verifyModels(toVerify, jsonl);
    verifySeconds = (performance.now() - t1) / 1000;
    results = readJsonl(jsonl);
  }
  const byModel = new Map(results.map((r) => [r.model, r]));
  const rows: ModelResult[] = models.map((m) => byModel.get(m.model) ?? { model: m.model, status: (changedSet.has(resolve(m.file)) ? 'not_runnable' : 'not_rewritten') as ModelResult['status'], reason: changedSet.has(resolve(m.file)) ? (verify ? 'no result' : 'not verified (run with --verify)') : 'no site rewritten' }).map((r) => ({ ...r, sites: sitesPer(models.find((m) => m.model === r.model)!.file) }));
  const rewritten = rows.filter((r) => r.status !== 'not_rewritten');
  const runnable = rewritten.filter((r) => r.status === 'verified' || r.status === 'mismatch');
  const verified = rewritten.filter((r) => r.status === 'verified');
  const mismatch = rewritten.filter((r) => r.status === 'mismatch');
  const summary = {
    files: models.length, rewritten_models: rewritten.length, runnable: runnable.length, verified: verified.length, mismatch: mismatch.length,
    not_runnable: rewritten.length - runnable.length, runnable_ratio: rewritten.length ? round(runnable.length / rewritten.length) : 0,
    verified_ratio_of_runnable: runnable.length ? round(verified.length / runnable.length) : 0,
    seconds: round(rewriteSeconds + verifySeconds), rewrite_seconds: round(rewriteSeconds), verify_seconds: round(verifySeconds), verified_run: verify,
  };
  writeFileSync(join(OUT, 'hf.json'), JSON.stringify({ summary, models: rows }, null, 1));
  writeHtmlReport(join(OUT, 'hf-report.html'), summary, rows, run.synth.sites);

  console.log('model                               sites  status         reason');
  for (const r of rows) if (r.status !== 'not_rewritten') console.log(`${r.model.padEnd(36)}${String(r.sites ?? 0).padStart(5)}  ${r.status.padEnd(13)}  ${(r.reason ?? (r.problems ?? []).join('; ')).slice(0, 90)}`);
  console.log(`\n${summary.rewritten_models} models rewritten; runnable ${summary.runnable} (${(summary.runnable_ratio * 100).toFixed(1)}%), verified ${summary.verified}, mismatch ${summary.mismatch}; report ${OUT}/hf-report.html`);
  console.log(JSON.stringify(summary));
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

main();
