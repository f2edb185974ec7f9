// bench:models — forward and training-step time (and peak memory on a GPU) of seven models,
// original vs rewritten, measured side by side in one process (native/adopt_harness/speed.py).
// On CPU it runs in fp32; where a GPU is present, in bf16.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { NATIVE_DIR, pythonExecutable } from '../verify/python.js';
import { cacheDir, ensureTransformers, hf199Files } from './corpus.js';
import { rewriteAll, writeMirror } from './rewrite.js';

const OUT = 'bench-results';

function main(): void {
  const arg = (name: string, dflt: string) => { const i = process.argv.indexOf(name); return i > 0 ? process.argv[i + 1] : dflt; };
  const pkg = ensureTransformers();
  const models = hf199Files(pkg);
  const run = rewriteAll(models.map((m) => m.file), pkg);
  const { mirror } = writeMirror(pkg, run.synth.files);
  spawnSync('bash', [resolve('scripts/setup-python.sh'), '--hf'], { stdio: 'inherit' });
  mkdirSync(OUT, { recursive: true });
  const out = resolve(OUT, 'models.json');
  const r = spawnSync(pythonExecutable(), ['-m', 'adopt_harness.speed', out, join(mirror, 'models'), '--seq', arg('--seq', '128,512'), '--repeats', arg('--repeats', '5')], {
    stdio: ['ignore', 'inherit', 'inherit'], timeout: 3_600_000,
    env: { ...process.env, PYTHONPATH: [NATIVE_DIR, join(cacheDir(), 'pydeps')].join(':'), PYTHONUNBUFFERED: '1' },
  });
  if (r.status !== 0) process.stderr.write(`speed harness exited with ${r.status ?? r.signal}\n`);
  const rows = JSON.parse(readFileSync(out, 'utf8')) as Record<string, unknown>[];
  console.log('\nmodel          input     forward orig  rewritten  ratio   train orig  rewritten  ratio   memory ratio');
  const summary: Record<string, unknown> = {};
  for (const row of rows) {
    if (row.error) { console.log(`${String(row.model).padEnd(15)}error: ${row.error}`); summary[String(row.model)] = { error: row.error }; continue; }
    for (const [k, v] of Object.entries(row)) {
      if (!/^(seq\d+|image\d+)$/.test(k)) continue;
      const e = v as Record<string, number>;
      console.log(`${String(row.model).padEnd(15)}${k.padEnd(10)}${e.forward_original_s.toFixed(4).padStart(12)}${e.forward_rewritten_s.toFixed(4).padStart(11)}${e.forward_ratio.toFixed(3).padStart(7)}${e.train_original_s.toFixed(4).padStart(13)}${e.train_rewritten_s.toFixed(4).padStart(11)}${e.train_ratio.toFixed(3).padStart(7)}${(e.memory_ratio ? e.memory_ratio.toFixed(3) : 'n/a').padStart(15)}`);
      summary[`${row.model}@${k}`] = { forward_ratio: round(e.forward_ratio), train_ratio: round(e.train_ratio), memory_ratio: e.memory_ratio ? round(e.memory_ratio) : null, device: row.device, dtype: row.dtype };
    }
  }
  writeFileSync(resolve(OUT, 'models-summary.json'), JSON.stringify(summary, null, 1));
  console.log(JSON.stringify(summary));
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

main();
