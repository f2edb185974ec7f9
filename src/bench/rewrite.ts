// bench:rewrite — all rules over HF-199 (transformers 4.35.0): Adopter-scored precision/recall per
// rule, the attention rule in BertSelfAttention/T5Attention/GPT2Attention, every site listed,
// wall time, py_compile of every rewritten file, idempotence (a second rewrite changes nothing),
// and location-level precision/recall on the team's labelled fixtures.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { loadRules, type Rule } from '../match/rule.js';
import { planRewrite, runPipeline, writeMirror } from '../pipeline/index.js';
import { runPythonJson } from '../verify/python.js';
import { adopterScores } from './adopter.js';
import { ensureTransformers, hf199Files, readGroundTruth } from './corpus.js';
import { labelledGroups, type Label, type LabelledGroup } from './labels.js';
import { score } from './score.js';
import { pct, round } from './format.js';
import { measure, parseFloor, ratioLine } from './parse-floor.js';

const round4 = (x: number) => round(x, 4);

const OUT = 'bench-results';

function main(): void {
  const pkg = ensureTransformers();
  const models = hf199Files(pkg);
  const gt = readGroundTruth();

  const floor = parseFloor(models.map((m) => m.file));
  const { value: run, cost } = measure(() => runPipeline(models.map((m) => m.file), { root: pkg }));
  const { program, sites: matched } = run.plan;

  // ---- Adopter-scored counts ----
  const { cells, perRule, outside } = adopterScores(models, program, matched, gt);
  const total = score(cells);
  const audited = adopterScores(models, program, matched, readGroundTruth('audited'));
  const auditedTotal = score(audited.cells);

  // ---- attention ----
  const attention = matched.filter((s) => s.rule === 'attention');
  const fires = Object.fromEntries(['BertSelfAttention', 'T5Attention', 'GPT2Attention'].map((cls) => [cls, attention.filter((s) => s.owner === cls).map((s) => `${s.file.split('/').slice(-2).join('/')}:${s.lines[0]}-${s.lines[1]}`)]));

  // ---- write rewritten tree, compile, idempotence ----
  const { mirror, changed, changedPaths } = writeMirror(pkg, run.files, OUT);
  let compileFailures: string[] = [];
  if (changedPaths.length) {
    const r = runPythonJson('adopt_harness.compiles', changedPaths);
    if (!r.ok || !Array.isArray(r.value) || !r.value.every((x) => typeof x === 'string')) throw new Error(`cannot byte-compile the rewritten files: ${r.ok ? 'not a list of strings' : r.error}`);
    compileFailures = r.value;
  }
  const again = runPipeline(models.map((m) => join(mirror, 'models', m.model, `modeling_${m.model}.py`)), { root: mirror });
  const notIdempotent = again.files.filter((f) => f.rewritten !== f.original).map((f) => f.path);

  // ---- fixtures: location level ----
  const fixtures = fixtureScores();

  const decisions = run.sites.reduce((acc, s) => { acc[s.decision] = (acc[s.decision] ?? 0) + 1; return acc; }, {} as Record<string, number>);
  const report = {
    files: models.length,
    precision: round4(total.precision), recall: round4(total.recall), tp: total.tp, fp: total.fp, fn: total.fn,
    per_rule: perRule,
    audited: { precision: round4(auditedTotal.precision), recall: round4(auditedTotal.recall), tp: auditedTotal.tp, fp: auditedTotal.fp, fn: auditedTotal.fn, per_rule: audited.perRule },
    attention: { fires_in: fires, sites: attention.length, other_sites: attention.filter((s) => !['BertSelfAttention', 'T5Attention', 'GPT2Attention'].includes(s.owner)).map((s) => `${s.file.split('/').slice(-2).join('/')}:${s.lines[0]} ${s.owner}`) },
    seconds: round4(run.times.total), stage_seconds: Object.fromEntries(Object.entries(run.times).map(([k, v]) => [k, round4(v)])),
    sites_found: matched.length, decisions, files_changed: changed.length,
    compile_failures: compileFailures.length, compile_failure_list: compileFailures,
    synth_errors: run.files.filter((f) => f.error).map((f) => f.error),
    idempotent: notIdempotent.length === 0, not_idempotent: notIdempotent,
    fixtures,
    mismatched_cells: cells.filter((c) => c.found !== c.truth),
  };
  mkdirSync(OUT, { recursive: true });
  writeFileSync(join(OUT, 'rewrite.json'), JSON.stringify({ ...report, outside_adopter_scope: outside, sites: run.sites }, null, 1));

  console.log('rule                      P       R      tp   fp   fn  exact/199  all sites (outside Adopter scope)');
  for (const [rule, r] of Object.entries(perRule) as [string, { precision: number; recall: number; tp: number; fp: number; fn: number; exact_models: number; all_sites: number; outside_adopter_scope: number }][]) {
    console.log(`${rule.padEnd(24)} ${pct(r.precision)} ${pct(r.recall)} ${String(r.tp).padStart(5)}${String(r.fp).padStart(5)}${String(r.fn).padStart(5)}  ${String(r.exact_models).padStart(9)}  ${r.all_sites} (${r.outside_adopter_scope})`);
  }
  console.log(`total (rules 4-9)        ${pct(total.precision)} ${pct(total.recall)} ${String(total.tp).padStart(5)}${String(total.fp).padStart(5)}${String(total.fn).padStart(5)}   against Adopter's published counts`);
  console.log(`total, audited counts    ${pct(auditedTotal.precision)} ${pct(auditedTotal.recall)} ${String(auditedTotal.tp).padStart(5)}${String(auditedTotal.fp).padStart(5)}${String(auditedTotal.fn).padStart(5)}   against fixtures/hf199/adopter-hf199-counts-audited.tsv (AUDIT.md)`);
  for (const [cls, where] of Object.entries(fires)) console.log(`attention in ${cls}: ${where.length ? where.join(', ') : 'NOT FOUND'}`);
  console.log(`attention sites elsewhere: ${report.attention.other_sites.length} (listed in ${OUT}/rewrite.json)`);
  console.log(`sites ${matched.length}: ${Object.entries(decisions).map(([k, v]) => `${v} ${k}`).join(', ')}; ${changed.length} files changed; compile failures ${compileFailures.length}; idempotent ${report.idempotent}`);
  console.log(`fixtures (location level): precision ${pct(fixtures.precision)} recall ${pct(fixtures.recall)} (${fixtures.tp} tp, ${fixtures.fp} fp, ${fixtures.fn} fn)`);
  console.log(ratioLine('rewrite (analyse, match, synthesize)', cost, floor));
  console.log(`wall ${report.seconds}s (analyse ${report.stage_seconds.analyse}s, match ${report.stage_seconds.match}s, synthesize ${report.stage_seconds.synthesize}s)`);
  console.log(JSON.stringify({ precision: report.precision, recall: report.recall, audited_precision: report.audited.precision, audited_recall: report.audited.recall, per_rule: Object.fromEntries(Object.entries(perRule).map(([k, v]) => [k, { precision: round4((v as { precision: number }).precision), recall: round4((v as { recall: number }).recall) }])), seconds: report.seconds, compile_failures: report.compile_failures, idempotent: report.idempotent, fixtures_precision: round4(fixtures.precision), fixtures_recall: round4(fixtures.recall), attention_fires: Object.fromEntries(Object.entries(fires).map(([k, v]) => [k, v.length > 0])) }));
}

/** The label markers in the sources of `dir`, read and checked against the rules (src/bench/labels.ts). */
export function readFixtureLabels(dir = resolve('fixtures', 'models'), rules = loadRules()): { groups: LabelledGroup[]; rules: Rule[] } {
  return { groups: labelledGroups(dir, new Set(rules.map((r) => r.name))), rules };
}

/** Location-level scoring against labels: a site matches a site label of its rule in the same
 *  file when their line ranges overlap; each label matches at most one site. */
export function scoreLabels({ groups, rules }: { groups: LabelledGroup[]; rules: Rule[] }) {
  let tp = 0, fp = 0, fn = 0;
  const misses: string[] = [];
  const extras: string[] = [];
  for (const { files, labels } of groups) {
    const { sites } = planRewrite(files, { rules });
    const pending = labels.filter((l) => l.kind === 'site');
    const claimed = new Set<Label>();
    for (const s of sites) {
      const hit = pending.find((l) => !claimed.has(l) && l.rule === s.rule && resolve(s.file) === l.path && s.lines[0] <= l.lines[1] && l.lines[0] <= s.lines[1]);
      if (hit) { claimed.add(hit); tp++; } else { fp++; extras.push(`${s.file}:${s.lines[0]}-${s.lines[1]} ${s.rule}`); }
    }
    for (const l of pending) if (!claimed.has(l)) { fn++; misses.push(`${relative(process.cwd(), l.path)}:${l.lines[0]}-${l.lines[1]} ${l.rule}`); }
  }
  return { precision: tp + fp ? tp / (tp + fp) : 1, recall: tp + fn ? tp / (tp + fn) : 1, tp, fp, fn, missed: misses, extra: extras };
}

export function fixtureScores(dir = resolve('fixtures', 'models')) {
  return scoreLabels(readFixtureLabels(dir));
}


if (process.argv[1]?.endsWith('rewrite.js')) main();
