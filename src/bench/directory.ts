// `adopt bench DIR`: every Python file under DIR analysed and rewritten with all rules; sites scored
// at location level against labels where there are any (`*.labels.json` beside the files, or
// --labels), every rewritten file optionally verified in torch, and the same terminal table, JSON
// and HTML report as the HF-199 run.
import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { findPythonFiles } from '../analysis/project.js';
import { AdoptError } from '../diag.js';
import { checkVariants } from '../verify/file.js';
import { Progress } from './progress.js';
import { writeHtmlReport, type ReportRow } from './report.js';
import { fixtureScores, rewriteAll } from './rewrite.js';
import { round } from './format.js';

export interface DirBenchOptions { verify?: boolean; labels?: string; out?: string; report?: string }

export function benchDirectory(dir: string, opts: DirBenchOptions = {}) {
  let st;
  try { st = statSync(dir); } catch { throw new AdoptError(`${dir}: no such directory`); }
  if (!st.isDirectory()) throw new AdoptError(`${dir}: not a directory (adopt bench takes a directory, or --hf)`);
  const files = findPythonFiles(resolve(dir));
  if (!files.length) throw new AdoptError(`${dir}: no Python files`);
  const out = resolve(opts.out ?? 'bench-results');
  const t0 = performance.now();
  const run = rewriteAll(files, resolve(dir));
  const labels = fixtureScores(resolve(opts.labels ?? dir));
  const changed = run.synth.files.filter((f) => !f.error && f.rewritten !== f.original);
  const rows: ReportRow[] = files.map((f) => ({ model: relative(resolve(dir), f), status: 'not_rewritten', reason: 'no site rewritten', sites: run.synth.sites.filter((s) => resolve(s.file) === f && s.decision === 'rewritten').length }));
  let verifySeconds = 0;
  if (opts.verify) {
    const t1 = performance.now();
    const progress = new Progress('verifying', changed.length);
    for (const f of changed) {
      const row = rows.find((r) => r.model === relative(resolve(dir), resolve(f.path)))!;
      const r = checkVariants(f.path, { rewritten: f.rewritten }, { repeats: 5 });
      progress.tick(row.model);
      if (!r.ok) { Object.assign(row, { status: 'not_runnable', reason: r.error }); continue; }
      const bad = r.results.filter((x) => x.status === 'mismatch');
      const ok = r.results.filter((x) => x.status === 'verified');
      const ratio = (k: 'forward' | 'train') => { const t = ok.map((x) => x.timings?.[k]).filter(Boolean); return t.length ? { original_s: t.reduce((a, x) => a + x!.original_s, 0), rewritten_s: t.reduce((a, x) => a + x!.rewritten_s, 0) } : undefined; };
      Object.assign(row, bad.length
        ? { status: 'mismatch', problems: bad.map((x) => `${x.class}: ${(x.problems ?? []).slice(0, 2).join('; ')}`) }
        : ok.length ? { status: 'verified', reason: `${ok.length}/${r.results.length} classes verified`, timings: { eval: ratio('forward'), train: ratio('train') } }
        : { status: 'not_runnable', reason: r.results.map((x) => `${x.class}: ${x.reason}`).slice(0, 2).join('; ') || 'no nn.Module class in the file to build' });
    }
    progress.end();
    verifySeconds = (performance.now() - t1) / 1000;
  } else {
    for (const f of changed) Object.assign(rows.find((r) => r.model === relative(resolve(dir), resolve(f.path)))!, { status: 'not_verified', reason: 'run with --verify to verify' });
  }
  const rewritten = rows.filter((r) => r.status !== 'not_rewritten');
  const count = (s: string) => rewritten.filter((r) => r.status === s).length;
  const summary = {
    files: files.length, rewritten_files: rewritten.length, sites: run.synth.sites.length, sites_rewritten: run.synth.sites.filter((s) => s.decision === 'rewritten').length,
    labelled_precision: labels.tp + labels.fp ? round(labels.precision) : null, labelled_recall: labels.tp + labels.fn ? round(labels.recall) : null,
    verified: opts.verify ? count('verified') : null, mismatch: opts.verify ? count('mismatch') : null, not_runnable: opts.verify ? count('not_runnable') : null,
    seconds: round((performance.now() - t0) / 1000), rewrite_seconds: round(run.times.total), verify_seconds: round(verifySeconds),
  };
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'bench.json'), JSON.stringify({ summary, labels, files: rows, sites: run.synth.sites }, null, 1));
  const report = resolve(opts.report ?? join(out, 'report.html'));
  writeHtmlReport(report, { title: `adopt on ${dir}`, summary, rows, sites: run.synth.sites, stages: { ...run.times, verify: verifySeconds } });
  return { summary, rows, labels, report };
}

export function printDirectory(r: ReturnType<typeof benchDirectory>): void {
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

