// bench:models — forward and training-step time (and peak memory on a GPU) of seven models,
// original vs rewritten with all rules vs rewritten with each rule alone, measured side by side in
// one process (native/adopt_harness/speed.py). On CPU it runs in fp32; on a GPU, in bf16.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { streamHarness } from '../verify/python.js';
import { speedEntries } from '../verify/results.js';
import { ensurePythonDeps, ensureTransformers, hf199Files } from './corpus.js';
import { runPipeline, synthesizePlan, writeMirror } from '../pipeline/index.js';
import { round } from './format.js';
import { headlineLines, modelHeadline } from './models-headline.js';

const OUT = 'bench-results';
const MODULES = ['bert', 'roberta', 'albert', 'gpt2', 't5', 'vit', 'llama'];

async function main(): Promise<void> {
  const arg = (name: string, dflt: string) => { const i = process.argv.indexOf(name); return i > 0 ? process.argv[i + 1] : dflt; };
  const pkg = ensureTransformers();
  const models = hf199Files(pkg);
  const run = runPipeline(models.map((m) => m.file), { root: pkg });
  const { mirror } = writeMirror(pkg, run.files, OUT);
  // one tree per rule: the seven models rewritten with that rule alone
  const targets = new Set(MODULES.map((m) => resolve(pkg, 'models', m, `modeling_${m}.py`)));
  const rules = [...new Set(run.sites.filter((s) => s.decision === 'rewritten' && targets.has(resolve(s.file))).map((s) => s.rule))].sort();
  const variantsDir = resolve(OUT, 'speed-variants');
  rmSync(variantsDir, { recursive: true, force: true });
  const variantArgs: string[] = [];
  for (const rule of rules) {
    const synth = synthesizePlan(run.plan, (s) => (s.rule === rule && targets.has(resolve(s.file)) ? null : 'another rule'));
    for (const f of synth.files) {
      if (f.error || f.rewritten === f.original) continue;
      const module = resolve(f.path).split('/').slice(-2)[0];
      mkdirSync(join(variantsDir, rule, module), { recursive: true });
      writeFileSync(join(variantsDir, rule, module, `modeling_${module}.py`), f.rewritten);
    }
    variantArgs.push('--variant', `${rule}=${join(variantsDir, rule)}`);
  }
  if (process.argv.includes('--prepare-only')) {
    // the trees for a run of the speed harness elsewhere (a GPU machine without Node)
    console.log(JSON.stringify({ rewritten: join(mirror, 'models'), variants: variantArgs }));
    return;
  }
  const deps = ensurePythonDeps();
  mkdirSync(OUT, { recursive: true });
  const out = resolve(OUT, 'models.json');
  const flag = (name: string) => process.argv.includes(name);
  const valued = ['--batch', '--threads', '--clock', '--blas-core', '--train-repeats'].filter(flag).flatMap((name) => [name, arg(name, '')]);
  const extra = [...(flag('--profile') ? ['--profile'] : []), ...valued, ...['--keep-freed-memory', '--quiet-blas-threads'].filter(flag),
    // the training step as each model's configuration runs it: its dropout on, for both sides
    ...(flag('--with-dropout') ? ['--dropout', 'config'] : []),
    // the rewrite with one kernel switched off, paired with the rewrite: that kernel's own share
    ...process.argv.flatMap((a, i) => (a === '--without' && process.argv[i + 1] ? ['--without', process.argv[i + 1]] : []))];
  // OpenMP reads its wait policy once, when it loads: it is set for the harness process, both sides alike
  const env = flag('--omp-passive') ? { OMP_WAIT_POLICY: 'passive' } : undefined;
  const r = await streamHarness('speed', [join(mirror, 'models'), ...(flag('--no-per-rule') ? [] : variantArgs), ...extra, '--seq', arg('--seq', '128,512'), '--repeats', arg('--repeats', '6'), '--models', arg('--models', 'bert-base,roberta-base,albert-base,gpt2,t5-small,vit-base,llama-style')], {
    pythonPath: [deps], env, timeoutMs: 3_600_000, stderr: 'inherit', onProgress: (p) => console.log(JSON.stringify(p)),
  });
  if (!r.ok) process.stderr.write(`${r.error}\n`);
  const rows = r.results;
  writeFileSync(out, JSON.stringify(rows, null, 1));
  const device = rows.find((x) => x.device)?.device;
  console.log(`\nratios are rewritten time over original time (below 1 is faster); threads ${rows.find((x) => x.threads)?.threads ?? '?'} for both; ${rows.find((x) => x.clock)?.clock === 'cpu' ? 'CPU time of the process' : 'wall time'}; ${rows.find((x) => x.malloc)?.malloc === 'kept' ? 'malloc keeps freed memory (both sides)' : "the system's malloc"}; idle threads: ${rows.find((x) => x.idle_threads)?.idle_threads ?? '?'}; dropout: ${rows.find((x) => x.dropout)?.dropout === 'config' ? "as each model's configuration sets it" : 'off'}; BLAS: ${rows.find((x) => x.blas)?.blas ?? '?'}; \`slower\`: a ratio of medians above 1.05 (the headline's sign test asks the rounds)`);
  console.log(`\nmodel          input     forward orig  rewritten  ratio   train orig  rewritten  ratio     paired (quartiles)   memory ratio   (${device}, median, side by side)`);
  const summary: Record<string, unknown> = {};
  const ruleRows: string[] = [];
  const withoutRows: string[] = [];
  for (const row of rows) {
    if (row.error) { console.log(`${String(row.model).padEnd(15)}error: ${row.error}`); summary[String(row.model)] = { error: row.error }; continue; }
    for (const [k, e] of speedEntries(row)) {
      const slower = e.forward_ratio > 1.05 || e.train_ratio > 1.05 ? '  slower' : '';
      const p = e.paired?.train;
      const paired = p ? `${p.median.toFixed(3)} (${p.q1.toFixed(3)}-${p.q3.toFixed(3)})` : 'n/a';
      console.log(`${String(row.model).padEnd(15)}${k.padEnd(10)}${e.forward_original_s.toFixed(4).padStart(12)}${e.forward_rewritten_s.toFixed(4).padStart(11)}${e.forward_ratio.toFixed(3).padStart(7)}${e.train_original_s.toFixed(4).padStart(13)}${e.train_rewritten_s.toFixed(4).padStart(11)}${e.train_ratio.toFixed(3).padStart(7)}${paired.padStart(23)}${(e.memory_ratio ? e.memory_ratio.toFixed(3) : 'n/a').padStart(15)}${slower}`);
      if (e.profile) console.log(`${''.padEnd(25)}training step outside matmuls: ${((e.profile.original.non_matmul_share ?? 0) * 100).toFixed(1)}% of the original's; the rewrite removed ${((e.profile.removed_of_non_matmul ?? 0) * 100).toFixed(1)}% of that time`);
      for (const [rule, pr] of Object.entries(e.per_rule ?? {})) {
        const mark = pr.forward_ratio > 1.05 || pr.train_ratio > 1.05 ? '  slower' : '';
        ruleRows.push(`${String(row.model).padEnd(15)}${k.padEnd(10)}${rule.padEnd(24)}${pr.forward_ratio.toFixed(3).padStart(8)}${pr.train_ratio.toFixed(3).padStart(8)}${mark}`);
      }
      for (const [kernel, w] of Object.entries(e.without ?? {})) {
        const t = w.train_paired_over_rewritten;
        withoutRows.push(`${String(row.model).padEnd(15)}${k.padEnd(10)}${kernel.padEnd(24)}${w.forward_paired_over_rewritten.median.toFixed(3).padStart(8)}${t.median.toFixed(3).padStart(8)} (${t.q1.toFixed(3)}-${t.q3.toFixed(3)}, slower in ${t.slower_rounds} of ${t.rounds})`);
      }
      summary[`${row.model}@${k}`] = {
        ...(e.profile ? { non_matmul_share: round(e.profile.original.non_matmul_share ?? 0), removed_of_non_matmul: round(e.profile.removed_of_non_matmul ?? 0) } : {}),
        forward_ratio: round(e.forward_ratio), train_ratio: round(e.train_ratio),
        ...(e.paired ? { train_ratio_paired: round(e.paired.train.median), train_ratio_quartiles: [round(e.paired.train.q1), round(e.paired.train.q3)], forward_ratio_paired: round(e.paired.forward.median) } : {}),
        memory_ratio: e.memory_ratio ? round(e.memory_ratio) : null, device: row.device, dtype: row.dtype, malloc: row.malloc, idle_threads: row.idle_threads, dropout: row.dropout, blas: row.blas,
        per_rule: Object.fromEntries(Object.entries(e.per_rule ?? {}).map(([rule, pr]) => [rule, { forward_ratio: round(pr.forward_ratio), train_ratio: round(pr.train_ratio) }])),
        ...(e.without ? { without: Object.fromEntries(Object.entries(e.without).map(([kernel, w]) => [kernel, { train_paired_over_rewritten: round(w.train_paired_over_rewritten.median), forward_paired_over_rewritten: round(w.forward_paired_over_rewritten.median) }])) } : {}),
      };
    }
  }
  if (withoutRows.length) {
    console.log('\nthe rewrite with one kernel off, over the rewrite (paired by round; above 1: the kernel saves time)   forward   train');
    for (const l of withoutRows) console.log(l);
  }
  if (ruleRows.length) {
    console.log('\nper rule (that rule alone)                         forward   train');
    for (const l of ruleRows) console.log(l);
  }
  const headline = modelHeadline(rows);
  console.log(`\n${headlineLines(headline).join('\n')}`);
  // beside the readings (keyed model@input), the headline under its own key
  summary.headline = headline;
  writeFileSync(resolve(OUT, 'models-summary.json'), JSON.stringify(summary, null, 1));
  console.log(JSON.stringify(summary));
}


main().catch((e: Error) => { process.stderr.write(`${e.message}\n`); process.exit(1); });
