// bench:real — adopt on current model code from pinned PyPI packages, scored against hand-written
// labels (fixtures/real/labels.json): location-level precision and recall per category, in two
// views (found: listed with any decision; rewritten), then --verify on every file with a rewrite.
// adopt runs as a subprocess through its CLI, one file at a time.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pct, round } from './format.js';
import { ensurePackage } from './real-corpus.js';
import { labelsPath, readLabels } from './real-labels.js';
import { anchorMismatches, rewrittenOrInside, scoreView, type LabelledFile, type ListedSite, type ViewScore } from './real-score.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const ADOPT = join(ROOT, 'bin', 'adopt.js');
const OUT = 'bench-results';

interface FileVerdict { file: string; status: string; error?: string; rules?: { rule: string; verdict: string; detail?: string }[] }
interface CliRun { sites: ListedSite[]; verification?: FileVerdict[] }

/** Pure-Python imports of the labelled packages that the verification harness's Python lacks
 *  (vit-pytorch needs einops); fetched like the packages and put on its PYTHONPATH. */
const VERIFY_DEPS = ['einops==0.8.2'];

/** `adopt rewrite FILE --json ...`; the parsed JSON, or the reason it could not run. */
function adopt(file: string, extra: string[], env: NodeJS.ProcessEnv, timeoutMs: number): CliRun | string {
  const r = spawnSync(process.execPath, [ADOPT, 'rewrite', file, '--json', '--no-learned', ...extra], { encoding: 'utf8', env, timeout: timeoutMs, maxBuffer: 1 << 28 });
  if (r.error) return `${r.error.message}`;
  if (r.status !== 0 && r.status !== 1) return `exit ${r.status}: ${(r.stderr ?? '').trim().split('\n').slice(-2).join(' ')}`;
  try {
    const run = JSON.parse(r.stdout) as CliRun;
    return { ...run, sites: run.sites.map((s) => ({ ...s, file: resolve(s.file) })) };
  } catch {
    return `unreadable output: ${(r.stderr ?? '').trim().split('\n').pop()}`;
  }
}

function printView(name: string, v: ViewScore): void {
  console.log(`\n${name}: precision ${pct(v.total.precision)} recall ${pct(v.total.recall)} (${v.total.tp}/${v.total.tp + v.total.fn} labels, ${v.total.fp} listed off-label)`);
  console.log('category                  P       R     found/labels  off-label');
  for (const [c, k] of Object.entries(v.perCategory)) {
    if (!k.tp && !k.fn && !k.fp) continue;
    console.log(`${c.padEnd(24)} ${pct(k.precision)} ${pct(k.recall)} ${String(k.tp).padStart(7)}/${String(k.tp + k.fn).padEnd(6)} ${String(k.fp).padStart(6)}`);
  }
}

function main(): void {
  const verify = !process.argv.includes('--no-verify');
  const doc = readLabels(labelsPath(ROOT));
  const files: LabelledFile[] = [];
  for (const [pin, entries] of Object.entries(doc.packages)) {
    const dir = ensurePackage(pin);
    for (const [rel, labels] of Object.entries(entries)) {
      const path = resolve(dir, rel);
      let source: string;
      try { source = readFileSync(path, 'utf8'); } catch { throw new Error(`${labelsPath(ROOT)}: ${pin} has no file ${rel} (looked for ${path})`); }
      files.push({ key: `${pin}:${rel}`, path, source, sites: labels.sites });
    }
  }
  const mismatch = anchorMismatches(files);
  for (const m of mismatch) console.error(`anchor mismatch: ${m.file}:${m.line} ${m.category}: expected '${m.anchor}', line reads '${m.found}'`);

  const sites: ListedSite[] = [];
  const failures: string[] = [];
  const t0 = performance.now();
  files.forEach((f, i) => {
    process.stderr.write(`[${i + 1}/${files.length}] ${f.key}\n`);
    const run = adopt(f.path, [], process.env, 300_000);
    if (typeof run === 'string') failures.push(`${f.key}: ${run}`);
    else sites.push(...run.sites);
  });
  const seconds = (performance.now() - t0) / 1000;
  const labelled = new Set(files.map((f) => f.path));
  const elsewhere = sites.filter((s) => !labelled.has(s.file)).map((s) => `${s.file}:${s.lines[0]}-${s.lines[1]} ${s.rule} ${s.decision}`);
  const found = scoreView(files, sites, () => true);
  const rewritten = scoreView(files, sites, rewrittenOrInside(sites));

  const changed = files.filter((f) => sites.some((s) => s.file === f.path && s.decision === 'rewritten'));
  const verification: FileVerdict[] = [];
  if (verify) {
    const pythonPath = [...VERIFY_DEPS.map(ensurePackage), process.env.PYTHONPATH].filter(Boolean).join(':');
    const env = { ...process.env, PYTHONPATH: pythonPath, ADOPT_DB: join(mkdtempSync(join(tmpdir(), 'adopt-real-')), 'records.jsonl') };
    changed.forEach((f, i) => {
      process.stderr.write(`verify [${i + 1}/${changed.length}] ${f.key}\n`);
      const run = adopt(f.path, ['--verify', '--repeats', '1'], env, 600_000);
      const v = typeof run === 'string' ? undefined : run.verification?.find((x) => resolve(x.file) === f.path);
      const entry: FileVerdict = { file: f.key, status: typeof run === 'string' ? 'not_runnable' : v?.status ?? 'not_runnable', error: typeof run === 'string' ? run : v?.error, rules: v?.rules };
      verification.push(entry);
      const rules = (entry.rules ?? []).map((r) => `${r.rule} ${r.verdict}`).join(', ');
      process.stderr.write(`  ${entry.status}${rules ? ` (${rules})` : ''}${entry.error ? `: ${entry.error.split('\n')[0].slice(0, 200)}` : ''}\n`);
    });
  }
  const verified = verification.filter((v) => v.status === 'verified').length;
  // A file can verify with some rules left out (mismatch, slower, a class not runnable): count those too.
  const verifyMismatch = verification.filter((v) => v.status === 'mismatch' || v.rules?.some((r) => r.verdict === 'mismatch')).length;
  const ruleVerdicts: Record<string, number> = {};
  for (const r of verification.flatMap((v) => v.rules ?? [])) ruleVerdicts[r.verdict] = (ruleVerdicts[r.verdict] ?? 0) + 1;

  const packages = Object.keys(doc.packages).length;
  const labelCount = files.reduce((n, f) => n + f.sites.length, 0);
  console.log(`real-code benchmark: ${files.length} files from ${packages} packages, ${labelCount} labelled sites, adopt listed ${sites.length} sites in ${round(seconds, 1)}s`);
  printView('found (listed with any decision)', found);
  printView('rewritten (a softmax inside a rewritten attention site counts: the attention kernel computes it)', rewritten);
  if (failures.length) console.log(`\nadopt could not run on ${failures.length} files:\n  ${failures.join('\n  ')}`);
  if (elsewhere.length) console.log(`\n${elsewhere.length} sites listed in files outside the labelled set (not scored; see ${OUT}/real.json)`);
  console.log(verify ? `\nverification: ${verified} of ${changed.length} rewritten files verified, ${verifyMismatch} with a mismatch, ${verification.filter((v) => v.status === 'not_runnable').length} not runnable, ${verification.filter((v) => v.status === 'unchanged').length} with every rule left out; per rule: ${Object.entries(ruleVerdicts).map(([k, n]) => `${n} ${k}`).join(', ') || 'none'}` : '\nverification skipped (--no-verify)');
  console.log(`anchor mismatches: ${mismatch.length}`);

  mkdirSync(OUT, { recursive: true });
  writeFileSync(join(OUT, 'real.json'), JSON.stringify({ found, rewritten, failures, elsewhere, verification, anchor_mismatches: mismatch }, null, 1));
  const r4 = (x: number) => round(x, 4);
  const perCategory = Object.fromEntries(Object.keys(found.perCategory).filter((c) => found.perCategory[c].tp + found.perCategory[c].fn + found.perCategory[c].fp > 0).map((c) => [c, {
    labels: found.perCategory[c].tp + found.perCategory[c].fn,
    found_recall: r4(found.perCategory[c].recall), rewritten_recall: r4(rewritten.perCategory[c].recall),
    found_precision: r4(found.perCategory[c].precision), precision: r4(rewritten.perCategory[c].precision),
  }]));
  console.log(JSON.stringify({
    found_recall: r4(found.total.recall), rewritten_recall: r4(rewritten.total.recall), precision: r4(rewritten.total.precision), found_precision: r4(found.total.precision),
    files: files.length, sites: labelCount, packages, verified: verify ? verified : null, verify_attempted: verify ? changed.length : 0, verify_mismatch: verifyMismatch, verify_rule_verdicts: ruleVerdicts,
    mismatch: mismatch.length, adopt_failures: failures.length, per_category: perCategory,
  }));
}

if (process.argv[1]?.endsWith('real.js')) {
  try {
    main();
  } catch (e) {
    console.error(`bench:real: ${(e as Error).message}`);
    process.exit(2);
  }
}
