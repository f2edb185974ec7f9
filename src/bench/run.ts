// One corpus run, shared by `bench DIR` and `bench --hf`: the pipeline over every file (with a line
// per stage on stderr), each changed file's diff written beside the results, optional
// verification of every rewritten model, and one row per model for the table, JSON and report.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { runPipeline, verifyModels, type ModelVerdict, type PipelineResult, type Verifier, type VerifyTarget } from '../pipeline/index.js';
import { unifiedDiff } from '../synth/diff.js';
import type { FileResult, SiteResult } from '../synth/synthesize.js';
import { Progress, stageLines } from './progress.js';

export type RowStatus = 'verified' | 'mismatch' | 'not_runnable' | 'not_verified' | 'not_rewritten';

/** One model (file) of a corpus and what became of it. */
export interface ModelRow extends Omit<ModelVerdict, 'status' | 'model'> {
  model: string;
  status: RowStatus;
  /** Sites rewritten in the model's file. */
  sites: number;
  /** Per rule: sites rewritten and sites found but left alone. */
  rules?: Record<string, { rewritten: number; skipped: number }>;
  /** The model's diff, relative to the results directory. */
  diff?: string;
  /** The model's source file. */
  file: string;
}

export interface CorpusModel { model: string; file: string }

export interface CorpusOptions { root: string; out: string; label: string }

export interface CorpusRun {
  result: PipelineResult;
  rows: ModelRow[];
  /** The rewrite of each changed model, by model name. */
  changed: Map<string, FileResult>;
}

const diffName = (model: string) => `diffs/${model.replace(/[/\\]/g, '__').replace(/\.py$/, '')}.diff`;

function perRule(sites: SiteResult[]): Record<string, { rewritten: number; skipped: number }> {
  const by: Record<string, { rewritten: number; skipped: number }> = {};
  for (const s of sites) (by[s.rule] ??= { rewritten: 0, skipped: 0 })[s.decision]++;
  return by;
}

/** The pipeline over the corpus, one row per model, and each changed model's diff in `out/diffs`. */
export function rewriteCorpus(models: CorpusModel[], opts: CorpusOptions): CorpusRun {
  const result = runPipeline(models.map((m) => m.file), { root: opts.root, onStage: stageLines(opts.label) });
  const fileOf = new Map(result.files.map((f) => [resolve(f.path), f]));
  const changed = new Map<string, FileResult>();
  for (const m of models) {
    const f = fileOf.get(resolve(m.file));
    if (f && !f.error && f.rewritten !== f.original) changed.set(m.model, f);
  }
  rmSync(join(opts.out, 'diffs'), { recursive: true, force: true });
  mkdirSync(join(opts.out, 'diffs'), { recursive: true });
  const rows: ModelRow[] = models.map((m) => {
    const f = changed.get(m.model);
    const sites = result.sites.filter((s) => resolve(s.file) === resolve(m.file));
    const row: ModelRow = { model: m.model, file: resolve(m.file), status: f ? 'not_verified' : 'not_rewritten', reason: f ? 'run with --verify to verify' : 'no site rewritten', sites: sites.filter((s) => s.decision === 'rewritten').length, rules: perRule(sites) };
    if (f) {
      row.diff = diffName(m.model);
      writeFileSync(join(opts.out, row.diff), unifiedDiff(f.path, f.original, f.edits, opts.root));
    }
    return row;
  });
  return { result, rows, changed };
}

/** Every changed model verified; each row takes its verdict. `where` names a model's rewrite on
 *  disk, for a verifier that imports it from there. Returns the seconds it took. */
export async function verifyCorpus(run: CorpusRun, verifier: Verifier, label: string, where?: (f: FileResult) => string): Promise<number> {
  const targets: VerifyTarget[] = [...run.changed].map(([model, f]) => ({ model, original: resolve(f.path), rewrittenText: f.rewritten, rewrittenPath: where?.(f) }));
  const { verdicts, seconds } = await verifyModels(targets, verifier, new Progress(`${label}: verifying`));
  for (const row of run.rows) {
    const v = verdicts.get(row.model);
    // the verdict replaces the row's "not verified" reason, also when it gives none
    if (v) Object.assign(row, { ...v, reason: v.reason, model: row.model, sites: row.sites });
  }
  return seconds;
}
