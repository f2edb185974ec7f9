// bench:rewrite — all rules over HF-199 (transformers 4.35.0): Adopter-scored precision/recall per
// rule, the attention rule in BertSelfAttention/T5Attention/GPT2Attention, every site listed,
// wall time, py_compile of every rewritten file, idempotence (a second rewrite changes nothing),
// and location-level precision/recall on the team's labelled fixtures.
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { analyzeProject } from '../analysis/analyze.js';
import { Project } from '../analysis/project.js';
import { matchProgram, type Site } from '../match/matcher.js';
import { loadRules } from '../match/rule.js';
import { synthesize } from '../synth/synthesize.js';
import { pythonExecutable } from '../verify/python.js';
import { adopterScores } from './adopter.js';
import { ensureTransformers, hf199Files, readGroundTruth } from './corpus.js';
import { score } from './score.js';
import { pct, round } from './format.js';
import { measure, parseFloor, ratioLine } from './parse-floor.js';

const round4 = (x: number) => round(x, 4);

const OUT = 'bench-results';

export function rewriteAll(files: string[], root: string) {
  const rules = loadRules();
  const t0 = performance.now();
  const project = Project.open(files, { root });
  const program = analyzeProject(project);
  const t1 = performance.now();
  const matched = matchProgram(program, rules);
  const t2 = performance.now();
  const synth = synthesize(matched.sites, rules, (p) => project.parsedFile(p));
  const t3 = performance.now();
  /** Synthesis again with only the sites `keep` accepts (one rule's, for per-rule timings). */
  const resynthesize = (keep: (s: Site) => boolean) => synthesize(matched.sites.filter(keep), rules, (p) => project.parsedFile(p));
  return { program, matched, synth, resynthesize, times: { analyse: (t1 - t0) / 1000, match: (t2 - t1) / 1000, synthesize: (t3 - t2) / 1000, total: (t3 - t0) / 1000 } };
}

function main(): void {
  const pkg = ensureTransformers();
  const models = hf199Files(pkg);
  const gt = readGroundTruth();

  const floor = parseFloor(models.map((m) => m.file));
  const { value: run, cost } = measure(() => rewriteAll(models.map((m) => m.file), pkg));
  const { program, matched, synth } = run;

  // ---- Adopter-scored counts ----
  const { cells, perRule, outside } = adopterScores(models, program, matched.sites, gt);
  const total = score(cells);

  // ---- attention ----
  const attention = matched.sites.filter((s) => s.rule === 'attention');
  const fires = Object.fromEntries(['BertSelfAttention', 'T5Attention', 'GPT2Attention'].map((cls) => [cls, attention.filter((s) => s.owner === cls).map((s) => `${s.file.split('/').slice(-2).join('/')}:${s.lines[0]}-${s.lines[1]}`)]));

  // ---- write rewritten tree, compile, idempotence ----
  const { mirror, changed, changedPaths } = writeMirror(pkg, synth.files);
  let compileFailures: string[] = [];
  if (changedPaths.length) {
    const script = 'import py_compile, sys, json, tempfile, os\nbad = []\nout = os.path.join(tempfile.mkdtemp(), "x.pyc")\nfor p in sys.argv[1:]:\n    try:\n        py_compile.compile(p, doraise=True, cfile=out)\n    except Exception as e:\n        bad.append(p + ": " + str(e).splitlines()[0])\nprint(json.dumps(bad))';
    compileFailures = JSON.parse(execFileSync(pythonExecutable(), ['-c', script, ...changedPaths], { encoding: 'utf8', maxBuffer: 1 << 26 }).trim().split('\n').pop()!);
  }
  const again = rewriteAll(models.map((m) => join(mirror, 'models', m.model, `modeling_${m.model}.py`)), mirror);
  const notIdempotent = again.synth.files.filter((f) => f.rewritten !== f.original).map((f) => f.path);

  // ---- fixtures: location level ----
  const fixtures = fixtureScores();

  const decisions = synth.sites.reduce((acc, s) => { acc[s.decision] = (acc[s.decision] ?? 0) + 1; return acc; }, {} as Record<string, number>);
  const report = {
    files: models.length,
    precision: round4(total.precision), recall: round4(total.recall), tp: total.tp, fp: total.fp, fn: total.fn,
    per_rule: perRule,
    attention: { fires_in: fires, sites: attention.length, other_sites: attention.filter((s) => !['BertSelfAttention', 'T5Attention', 'GPT2Attention'].includes(s.owner)).map((s) => `${s.file.split('/').slice(-2).join('/')}:${s.lines[0]} ${s.owner}`) },
    seconds: round4(run.times.total), stage_seconds: Object.fromEntries(Object.entries(run.times).map(([k, v]) => [k, round4(v)])),
    sites_found: matched.sites.length, decisions, files_changed: changed.length,
    compile_failures: compileFailures.length, compile_failure_list: compileFailures,
    synth_errors: synth.files.filter((f) => f.error).map((f) => f.error),
    idempotent: notIdempotent.length === 0, not_idempotent: notIdempotent,
    fixtures,
    mismatched_cells: cells.filter((c) => c.found !== c.truth),
  };
  mkdirSync(OUT, { recursive: true });
  writeFileSync(join(OUT, 'rewrite.json'), JSON.stringify({ ...report, outside_adopter_scope: outside, sites: synth.sites }, null, 1));

  console.log('rule                      P       R      tp   fp   fn  exact/199  all sites (outside Adopter scope)');
  for (const [rule, r] of Object.entries(perRule) as [string, { precision: number; recall: number; tp: number; fp: number; fn: number; exact_models: number; all_sites: number; outside_adopter_scope: number }][]) {
    console.log(`${rule.padEnd(24)} ${pct(r.precision)} ${pct(r.recall)} ${String(r.tp).padStart(5)}${String(r.fp).padStart(5)}${String(r.fn).padStart(5)}  ${String(r.exact_models).padStart(9)}  ${r.all_sites} (${r.outside_adopter_scope})`);
  }
  console.log(`total (rules 4-9)        ${pct(total.precision)} ${pct(total.recall)} ${String(total.tp).padStart(5)}${String(total.fp).padStart(5)}${String(total.fn).padStart(5)}`);
  for (const [cls, where] of Object.entries(fires)) console.log(`attention in ${cls}: ${where.length ? where.join(', ') : 'NOT FOUND'}`);
  console.log(`attention sites elsewhere: ${report.attention.other_sites.length} (listed in ${OUT}/rewrite.json)`);
  console.log(`sites ${matched.sites.length}: ${Object.entries(decisions).map(([k, v]) => `${v} ${k}`).join(', ')}; ${changed.length} files changed; compile failures ${compileFailures.length}; idempotent ${report.idempotent}`);
  console.log(`fixtures (location level): precision ${pct(fixtures.precision)} recall ${pct(fixtures.recall)} (${fixtures.tp} tp, ${fixtures.fp} fp, ${fixtures.fn} fn)`);
  console.log(ratioLine('rewrite (analyse, match, synthesize)', cost, floor));
  console.log(`wall ${report.seconds}s (analyse ${report.stage_seconds.analyse}s, match ${report.stage_seconds.match}s, synthesize ${report.stage_seconds.synthesize}s)`);
  console.log(JSON.stringify({ precision: report.precision, recall: report.recall, per_rule: Object.fromEntries(Object.entries(perRule).map(([k, v]) => [k, { precision: round4((v as { precision: number }).precision), recall: round4((v as { recall: number }).recall) }])), seconds: report.seconds, compile_failures: report.compile_failures, idempotent: report.idempotent, fixtures_precision: round4(fixtures.precision), fixtures_recall: round4(fixtures.recall), attention_fires: Object.fromEntries(Object.entries(fires).map(([k, v]) => [k, v.length > 0])) }));
}

/** A copy of the package with the rewritten files in place, so relative imports still resolve. */
export function writeMirror(pkg: string, files: { path: string; original: string; rewritten: string; error?: string }[], out = OUT) {
  const mirror = resolve(out, 'hf199-rewritten', 'transformers');
  rmSync(resolve(out, 'hf199-rewritten'), { recursive: true, force: true });
  mkdirSync(resolve(out, 'hf199-rewritten'), { recursive: true });
  cpSync(pkg, mirror, { recursive: true });
  const changed = files.filter((f) => !f.error && f.rewritten !== f.original);
  for (const f of changed) writeFileSync(join(mirror, relative(pkg, resolve(f.path))), f.rewritten);
  const changedPaths = changed.map((f) => join(mirror, relative(pkg, resolve(f.path))));
  return { mirror, changed, changedPaths };
}

interface Label { rule: string; lines: [number, number]; file?: string; class?: string }

/** Location-level scoring on fixtures/models: a site matches a label of its rule in the same
 *  file when their line ranges overlap; each label matches at most one site. */
export function fixtureScores(dir = resolve('fixtures', 'models')) {
  const labelled: { files: string[]; labels: (Label & { path: string })[] }[] = [];
  for (const entry of readdirSync(dir).sort()) {
    const p = join(dir, entry);
    if (entry.endsWith('.labels.json')) {
      const py = p.replace(/\.labels\.json$/, '.py');
      const j = JSON.parse(readFileSync(p, 'utf8')) as { sites: Label[] };
      labelled.push({ files: [py], labels: j.sites.map((s) => ({ ...s, path: resolve(py) })) });
    } else if (statSync(p).isDirectory() && existsSync(join(p, 'labels.json'))) {
      const j = JSON.parse(readFileSync(join(p, 'labels.json'), 'utf8')) as { sites: Label[] };
      labelled.push({ files: [p], labels: j.sites.map((s) => ({ ...s, path: resolve(dir, s.file!) })) });
    }
  }
  const rules = loadRules();
  const known = new Set(rules.map((r) => r.name));
  let tp = 0, fp = 0, fn = 0;
  const misses: string[] = [];
  const extras: string[] = [];
  for (const { files, labels } of labelled) {
    const program = analyzeProject(Project.open(files));
    const { sites } = matchProgram(program, rules);
    const pending = labels.filter((l) => known.has(l.rule));
    const claimed = new Set<Label>();
    for (const s of sites) {
      const hit = pending.find((l) => !claimed.has(l) && l.rule === s.rule && resolve(s.file) === l.path && s.lines[0] <= l.lines[1] && l.lines[0] <= s.lines[1]);
      if (hit) { claimed.add(hit); tp++; } else { fp++; extras.push(`${s.file}:${s.lines[0]}-${s.lines[1]} ${s.rule}`); }
    }
    for (const l of pending) if (!claimed.has(l)) { fn++; misses.push(`${relative(process.cwd(), l.path)}:${l.lines[0]}-${l.lines[1]} ${l.rule}`); }
  }
  const unlabelledRules = [...new Set(labelled.flatMap((x) => x.labels.map((l) => l.rule)).filter((r) => !known.has(r)))];
  return { precision: tp + fp ? tp / (tp + fp) : 1, recall: tp + fn ? tp / (tp + fn) : 1, tp, fp, fn, missed: misses, extra: extras, rules_without_implementation: unlabelledRules };
}


if (process.argv[1]?.endsWith('rewrite.js')) main();

export type { Site };
