// bench:tuned — the tuner end to end on real models: each model file (transformers 4.35's BERT and
// the LLaMA-style decoder of bench:models) is rewritten, its workloads found at the bench's size
// and tuned on this CPU, and one training step is timed three ways side by side in one process:
// the original, the rewrite with default schedules, the rewrite with the tuned schedules.
// Options: --models bert-base,llama-style --budget 16 --seq 128 --batch 4 --threads 2 --repeats 7 --blas-core matched|as-loaded
//          --db FILE (default: a fresh store under bench-results/, so every run tunes from scratch)
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { runRewrite } from '../pipeline/index.js';
import { discoverWorkloads, tuneWorkloads } from '../tune/model.js';
import { LocalMeasurer, localTargetInfo } from '../tune/measurer.js';
import { scheduleFileText } from '../tune/schedule-file.js';
import { NATIVE_DIR, pythonExecutable } from '../verify/python.js';
import type { PairedRatio } from '../verify/results.js';
import { ensurePythonDeps, ensureTransformers } from './corpus.js';
import { round } from './format.js';

// the bench:models table's configurations (native/adopt_harness/speed.py MODELS)
const MODELS: Record<string, { module: string; cls: string; config: Record<string, number> }> = {
  'bert-base': { module: 'bert', cls: 'BertModel', config: {} },
  'llama-style': { module: 'llama', cls: 'LlamaModel', config: { hidden_size: 512, intermediate_size: 1376, num_hidden_layers: 8, num_attention_heads: 8, num_key_value_heads: 8, vocab_size: 32000 } },
};

interface Row { model: string; seq: number; train_original_s: number; train_default_s: number; train_tuned_s: number; default_over_original: number; tuned_over_original: number; tuned_over_default: number; max_rel_error: Record<string, number>; compiled_calls: number; malloc: string; idle_threads: string;
  /** the ratios round by round (speed.paired_ratio) */
  paired?: Record<RatioName, PairedRatio> }
type RatioName = 'tuned_over_original' | 'default_over_original' | 'tuned_over_default';
type Ratios = Record<RatioName, number> & { paired?: Record<string, number> };

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : dflt;
}

async function main(): Promise<void> {
  const pkg = ensureTransformers();
  const deps = ensurePythonDeps();
  process.env.PYTHONPATH = [deps, process.env.PYTHONPATH].filter(Boolean).join(':');
  const out = resolve('bench-results', 'tuned');
  mkdirSync(out, { recursive: true });
  const db = arg('--db', join(out, 'records.jsonl'));
  if (!process.argv.includes('--db')) rmSync(db, { force: true });
  const budget = Number(arg('--budget', '16'));
  const seqs = arg('--seq', '128');
  const batch = Number(arg('--batch', '4'));
  const threads = Number(arg('--threads', '2'));
  const blasCore = arg('--blas-core', 'matched');
  if (blasCore !== 'matched' && blasCore !== 'as-loaded') throw new Error(`--blas-core must be matched or as-loaded, not '${blasCore}'`);
  // bench:models' process settings, asked for by the same flags: for the measurer and the
  // timing harness alike, so that the schedules are tuned as they are then timed
  const processEnv: Record<string, string> = {
    ...(process.argv.includes('--keep-freed-memory') ? { ADOPT_KEEP_FREED_MEMORY: '1' } : {}),
    ...(process.argv.includes('--quiet-blas-threads') ? { ADOPT_QUIET_BLAS_THREADS: '1' } : {}),
    ...(process.argv.includes('--omp-passive') ? { OMP_WAIT_POLICY: 'passive' } : {}),
  };
  const info = localTargetInfo();
  const summary: Record<string, unknown> = {};
  let settings = '';
  for (const key of arg('--models', 'bert-base,llama-style').split(',')) {
    const m = MODELS[key];
    if (!m) throw new Error(`unknown model '${key}'; known: ${Object.keys(MODELS).join(', ')}`);
    const file = join(pkg, 'models', m.module, `modeling_${m.module}.py`);
    const f = runRewrite([file], {}).files[0];
    const rewritten = join(out, key, `modeling_${m.module}.py`);
    mkdirSync(join(out, key), { recursive: true });
    writeFileSync(rewritten, f.rewritten);
    const t0 = performance.now();
    const d = discoverWorkloads([{ path: file, rewritten: f.rewritten }], { config: JSON.stringify(m.config), batch, seq: Number(seqs.split(',')[0]), classes: [m.cls], threads });
    if (!d.workloads.length) throw new Error(`${key}: no workload found (${JSON.stringify(d.errors.concat(d.classes.filter((c) => c.status === 'not_run').map((c) => ({ file: c.class, error: c.reason ?? '' }))))})`);
    const discover_s = (performance.now() - t0) / 1000;
    process.stderr.write(`${key}: ${d.workloads.length} workload(s) found in ${discover_s.toFixed(1)} s; tuning, ${budget} measurements each\n`);
    // the kernels are tuned under the BLAS core they are timed under (linear + cross-entropy calls BLAS)
    const measurerEnv = { ...processEnv, ...(blasCore === 'matched' ? { ADOPT_BLAS_CORE: '1' } : {}) };
    const tuned = await tuneWorkloads(d.workloads, { budget, db, targetInfo: info, measurer: new LocalMeasurer({ threads, env: measurerEnv }), warn: (msg) => process.stderr.write(`  ${msg}\n`) });
    const schedules = join(out, key, 'adopt-schedules.json');
    rmSync(schedules, { force: true });
    writeFileSync(schedules, scheduleFileText(schedules, info.target, tuned.entries));
    for (const t of tuned.tuned) process.stderr.write(`  ${t.kernel} ${JSON.stringify(t.workload)}: ${t.measurements} measurements, ${t.speedup !== null ? `${t.speedup.toFixed(2)}x over default` : t.source}\n`);
    const timing = join(out, key, 'timing.json');
    const r = spawnSync(pythonExecutable(), ['-m', 'adopt_harness.tuned_speed', timing, '--model', key, '--rewritten', rewritten, '--schedules', schedules,
      '--seq', seqs, '--batch', String(batch), '--threads', String(threads), '--repeats', arg('--repeats', '7'), '--blas-core', blasCore], {
      stdio: ['ignore', 'inherit', 'inherit'], timeout: 3_600_000, env: { ...process.env, ...processEnv, PYTHONPATH: [NATIVE_DIR, deps].join(':'), PYTHONUNBUFFERED: '1' },
    });
    if (r.status !== 0) throw new Error(`${key}: timing harness exited with ${r.status ?? r.signal}`);
    const rows = JSON.parse(readFileSync(timing, 'utf8')) as Row[];
    settings = rows.length ? `malloc ${rows[0].malloc}, idle threads: ${rows[0].idle_threads}` : settings;
    summary[key] = {
      workloads: tuned.tuned.length, measurements: tuned.measurements, tuning_s: round(tuned.seconds, 1), discover_s: round(discover_s, 1),
      kernel_speedup_geomean: tuned.speedup === null ? null : round(tuned.speedup, 3),
      train: Object.fromEntries(rows.map((x) => [`seq${x.seq}`, {
        tuned_over_original: round(x.tuned_over_original, 3), default_over_original: round(x.default_over_original, 3), tuned_over_default: round(x.tuned_over_default, 3),
        ...(x.paired ? { paired: Object.fromEntries(Object.entries(x.paired).map(([k, p]) => [k, round(p.median, 3)])) } : {}),
      } satisfies Ratios])),
    };
  }
  console.log(`\nratios are time over time (below 1 is faster); batch ${batch}, ${threads} threads for all three, fp32, ${settings}, median of interleaved repeats, and [in brackets] the median of the ratios paired round by round`);
  console.log('model          workloads  meas.  tuning s  kernel speed-up   seq       tuned/orig     default/orig    tuned/default');
  for (const [key, s] of Object.entries(summary) as [string, { workloads: number; measurements: number; tuning_s: number; kernel_speedup_geomean: number | null; train: Record<string, Ratios> }][]) {
    for (const [seq, t] of Object.entries(s.train)) {
      const cell = (k: RatioName) => `${t[k]}${t.paired ? ` [${t.paired[k]}]` : ''}`.padStart(17);
      console.log(`${key.padEnd(14)} ${String(s.workloads).padStart(9)}  ${String(s.measurements).padStart(5)}  ${String(s.tuning_s).padStart(8)}  ${(s.kernel_speedup_geomean === null ? '-' : `${s.kernel_speedup_geomean}x`).padStart(15)}   ${seq.replace('seq', '').padStart(3)}${cell('tuned_over_original')}${cell('default_over_original')}${cell('tuned_over_default')}`);
    }
  }
  console.log(JSON.stringify({ bench: 'tuned', target: info.target.key, batch, threads, budget, settings, models: summary }));
}

main().catch((e) => { process.stderr.write(`bench:tuned: ${(e as Error).message}\n`); process.exit(1); });
