// `adopt bench DIR`: every Python file under DIR analysed and rewritten with all rules; sites scored
// at location level against labels where there are any (markers in the files, src/bench/labels.ts,
// or in those of --labels), every rewritten file optionally verified in torch, and the same
// terminal table, JSON and HTML report as the HF-199 run.
import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { findPythonFiles } from '../analysis/project.js';
import { AdoptError } from '../diag.js';
import { fileVerifier } from '../pipeline/index.js';
import { round } from './format.js';
import { writeHtmlReport } from './report.js';
import { readFixtureLabels, scoreLabels } from './rewrite.js';
import { rewriteCorpus, verifyCorpus } from './run.js';

export interface DirBenchOptions { verify?: boolean; labels?: string; out?: string; report?: string }

function pythonFilesOf(dir: string): string[] {
  let st;
  try { st = statSync(dir); } catch { throw new AdoptError(`${dir}: no such directory`); }
  if (!st.isDirectory()) throw new AdoptError(`${dir}: not a directory (adopt bench takes a directory, or --hf)`);
  const files = findPythonFiles(resolve(dir));
  if (!files.length) throw new AdoptError(`${dir}: no Python files`);
  return files;
}

export async function benchDirectory(dir: string, opts: DirBenchOptions = {}) {
  const files = pythonFilesOf(dir);
  // read first: a malformed label marker stops the run before anything is written
  const labelled = readFixtureLabels(resolve(opts.labels ?? dir));
  const out = resolve(opts.out ?? 'bench-results');
  mkdirSync(out, { recursive: true });
  const t0 = performance.now();
  const models = files.map((f) => ({ model: relative(resolve(dir), f), file: f }));
  const run = rewriteCorpus(models, { root: resolve(dir), out, label: 'bench' });
  const { result, rows } = run;
  const verifySeconds = opts.verify ? await verifyCorpus(run, fileVerifier(5), 'bench') : 0;
  const labels = scoreLabels(labelled);
  const rewritten = rows.filter((r) => r.status !== 'not_rewritten');
  const count = (s: string) => rewritten.filter((r) => r.status === s).length;
  const summary = {
    files: files.length, rewritten_files: rewritten.length, sites: result.sites.length, sites_rewritten: result.sites.filter((s) => s.decision === 'rewritten').length,
    labelled_precision: labels.tp + labels.fp ? round(labels.precision) : null, labelled_recall: labels.tp + labels.fn ? round(labels.recall) : null,
    verified: opts.verify ? count('verified') : null, mismatch: opts.verify ? count('mismatch') : null, not_runnable: opts.verify ? count('not_runnable') : null,
    seconds: round((performance.now() - t0) / 1000), rewrite_seconds: round(result.times.total), verify_seconds: round(verifySeconds), verified_run: !!opts.verify,
  };
  writeFileSync(join(out, 'bench.json'), JSON.stringify({ summary, labels, files: rows, sites: result.sites }, null, 1));
  const report = resolve(opts.report ?? join(out, 'report.html'));
  writeHtmlReport(report, { title: `adopt on ${dir}`, summary, rows, sites: result.sites, stages: { ...result.times, verify: verifySeconds }, verified: !!opts.verify, out });
  return { summary, rows, labels, report };
}

export function printDirectory(r: Awaited<ReturnType<typeof benchDirectory>>): void {
  console.log('file                                     sites  status         reason');
  for (const m of r.rows) console.log(`${m.model.padEnd(40)}${String(m.sites ?? 0).padStart(5)}  ${m.status.padEnd(13)}  ${(m.reason ?? (m.problems ?? []).join('; ')).slice(0, 80)}`);
  if (r.labels.tp + r.labels.fp + r.labels.fn) {
    console.log(`labelled sites: precision ${(r.labels.precision * 100).toFixed(1)}%, recall ${(r.labels.recall * 100).toFixed(1)}% (${r.labels.tp} tp, ${r.labels.fp} fp, ${r.labels.fn} fn)`);
    for (const m of r.labels.missed) console.log(`  missed ${m}`);
    for (const x of r.labels.extra) console.log(`  extra  ${x}`);
  }
  console.log(`report ${r.report}`);
  console.log(JSON.stringify(r.summary));
}
