// `adopt rewrite`: options, then the pipeline, then printing (a diff, JSON or a summary) and the
// exit code of the shared policy (./policy.ts).
import { relative, resolve } from 'node:path';
import { AdoptError, formatDiagnostic } from '../diag.js';
import { defaultRulesDir, selectRules, type Rule } from '../match/rule.js';
import { destinationsUnder, filesWithSyntaxErrors, runPipeline, UNPARSED, withholdMeasuredSlower, writeInPlace, writeTo, type PipelineResult, type Written } from '../pipeline/index.js';
import { readScheduleFile, scheduleFileBeside, writeScheduleFiles } from '../tune/schedule-file.js';
import { type TuneCliOptions, checkConfig, printModelSummary, targetInfo, tuneDiscovered, wholeNumber } from './tune.js';
import { tuneRewrites } from '../tune/rewrite.js';
import { formatNearMiss, rankNearMisses } from '../match/why-not.js';
import { maxFileSizeBytes } from '../parse/limits.js';
import { diffBase, unifiedDiff } from '../synth/diff.js';
import type { FileResult } from '../synth/synthesize.js';
import { exitCode, NOTHING_TO_ANALYSE } from './policy.js';
import { checkTemplates } from './rule-errors.js';

// the pipeline's entry for callers that used to find it here
export { runRewrite } from '../pipeline/index.js';

export interface RewriteOptions {
  rules?: string; builtinRules?: boolean; root?: string; inPlace?: boolean; backup?: boolean; output?: string;
  json?: boolean; check?: boolean; whyNot?: boolean; whyNotAll?: boolean; quiet?: boolean;
  verify?: boolean; config?: string; repeats?: string; learned?: boolean; maxFileSize?: string;
  /** --shape CLASS=SIZES, repeatable: the input shape `--verify` gives that class. */
  shape?: string[];
  /** --tune and its options (as for `adopt tune model.py`; --tune-config is its --config). */
  tune?: boolean; budget?: string; batch?: string; seq?: string; tuneConfig?: string; db?: string; class?: string[]; strategy?: string;
}

function checkOptions(opts: RewriteOptions): void {
  const modes = [opts.inPlace, !!opts.output, opts.check].filter(Boolean).length;
  if (modes > 1) throw new AdoptError('choose one of --in-place, -o/--output and --check');
  if (opts.backup && !opts.inPlace) throw new AdoptError('--backup only goes with --in-place');
  if ((opts.config || opts.repeats || opts.shape?.length) && !opts.verify) throw new AdoptError('--config, --repeats and --shape only go with --verify');
  shapesOf(opts.shape);
  if (opts.repeats && !/^\d+$/.test(opts.repeats)) throw new AdoptError(`--repeats must be a whole number, got '${opts.repeats}'`);
  const tuneOnly = ['budget', 'batch', 'seq', 'tuneConfig', 'db', 'class', 'strategy'] as const;
  const given = tuneOnly.filter((k) => opts[k] !== undefined);
  if (given.length && !opts.tune) throw new AdoptError(`${given.map((k) => `--${k === 'tuneConfig' ? 'tune-config' : k}`).join(', ')} only go with --tune`);
  if (opts.tune && opts.check) throw new AdoptError('--tune writes a schedule file; it does not go with --check');
  checkConfig('--tune-config', opts.tuneConfig);
}

/** `--shape Block=2,16,32 --shape Attention=2,7,32` as class name → sizes; the class is looked
 *  for in every verified file (a name no file defines is given to none). */
export function shapesOf(given: string[] | undefined): Record<string, string> | undefined {
  if (!given?.length) return undefined;
  const out: Record<string, string> = {};
  for (const g of given) {
    const m = /^([A-Za-z_]\w*)=(\d+(?:,\d+)*)$/.exec(g.trim());
    if (!m) throw new AdoptError(`--shape takes CLASS=SIZES, the class and its input's comma-separated sizes (e.g. ResBlock=2,16,8,8), got '${g}'`);
    out[m[1]] = m[2];
  }
  return out;
}

const say = (line: string) => process.stderr.write(`${line}\n`);

export async function rewriteCommand(paths: string[], opts: RewriteOptions): Promise<number> {
  checkOptions(opts);
  if (opts.whyNotAll) opts.whyNot = true;
  const named = new Set((opts.rules ?? '').split(',').map((x) => x.trim()));
  const library = resolve(defaultRulesDir());
  const given = (r: Rule) => relative(library, resolve(r.file)).startsWith('..');
  // before any input is read: a broken rule file stops the command at its own line, where
  // synthesis would only refuse each site it matched, without naming the rule file
  const rules = checkTemplates(selectRules(opts.rules, { builtin: opts.builtinRules }).rules, given);
  let result = runPipeline(paths, {
    rules, builtinRules: opts.builtinRules, root: opts.root, whyNot: opts.whyNot, maxBytes: maxFileSizeBytes(opts.maxFileSize),
    withhold: opts.learned === false ? undefined : withholdMeasuredSlower(named),
    verify: opts.verify ? { config: opts.config, shapes: shapesOf(opts.shape), repeats: Number(opts.repeats ?? 20), say: opts.json ? () => {} : say } : undefined,
  });
  for (const f of result.plan.program.files) for (const d of f.diagnostics) if (d.severity === 'error') say(formatDiagnostic(d));
  for (const f of result.files) if (f.error) say(`adopt: error: ${f.error}`);
  const tuned = opts.tune ? await tuneStage(result, paths, opts) : null;
  if (tuned) result = { ...result, files: tuned.files };
  // the pipeline leaves a file that does not parse alone; nothing reaches the disk or a diff from it
  const unparsed = filesWithSyntaxErrors(result.plan.program);
  const changed = result.files.filter((f) => !f.error && f.rewritten !== f.original && !unparsed.has(f.path));
  const emitted: Written = opts.inPlace ? writeInPlace(changed, !!opts.backup) : opts.output ? writeTo(opts.output, changed, paths) : { written: changed, errors: [] };
  for (const e of emitted.errors) say(`adopt: error: ${e}`);
  if (emitted.copied?.length && !opts.json) say(`adopt: ${emitted.copied.length} other file(s) of the input copied unchanged into ${opts.output}`);
  if (tuned?.entries.length && !emitted.errors.length) {
    // beside each written module; beside the original for a diff, which is applied there
    const to = opts.output ? destinationsUnder(opts.output, paths) : (p: string) => p;
    const files = writeScheduleFiles(emitted.written.filter((f) => tuned.paths.has(f.path)).map((f) => to(f.path)), tuned.target, tuned.entries);
    for (const f of files) say(`adopt: schedules written to ${f}`);
  }

  const nearMisses = rankNearMisses(result.nearMisses, opts.whyNotAll ? 'all' : 'close', result.plan.sites);
  result = { ...result, nearMisses: nearMisses.shown };
  if (opts.json) printJson(result, !!opts.whyNot);
  else {
    if (!opts.inPlace && !opts.output && !opts.check) printDiffs(changed, opts.root);
    printSummary(result, emitted.written, opts, nearMisses.hidden);
  }
  if (result.empty) process.stderr.write(NOTHING_TO_ANALYSE);
  return exitCode({
    inputErrors: result.inputs.filter((i) => i.error).length, empty: result.empty,
    failures: emitted.errors.length, differs: opts.check && changed.length > 0,
  });
}

/** The tune stage: the kept rewrites' workloads found at the model's real size and tuned. */
async function tuneStage(result: PipelineResult, inputs: string[], opts: RewriteOptions) {
  const t: TuneCliOptions = { budget: opts.budget ?? '16', strategy: opts.strategy, db: opts.db, config: opts.tuneConfig, batch: opts.batch, seq: opts.seq, class: opts.class };
  const changed = result.files.filter((f) => !f.error && f.rewritten !== f.original);
  if (!changed.length) return null;
  // a schedule file the tuning would have to replace (not one, or unreadable) stops the command
  // before anything is measured or written
  const to = opts.output ? destinationsUnder(opts.output, inputs) : (p: string) => p;
  for (const f of new Set(changed.map((c) => scheduleFileBeside(to(c.path))))) readScheduleFile(f);
  const info = targetInfo();
  const discover = { config: t.config, batch: wholeNumber('--batch', t.batch, 4, 1), seq: wholeNumber('--seq', t.seq, 512, 1), classes: t.class };
  const tuned = await tuneRewrites(result.files, discover, (d) => tuneDiscovered(d, t, changed.map((f) => f.path).join(', '), info));
  if (tuned.summary && !opts.json) printModelSummary(tuned.summary, tuned.discovery, process.stderr);
  const paths = new Set(tuned.discovery.workloads.flatMap((w) => w.files));
  return { files: tuned.files, entries: tuned.summary?.entries ?? [], paths, target: info.target };
}

function printDiffs(changed: FileResult[], root: string | undefined): void {
  for (const f of changed) {
    process.stdout.write(unifiedDiff(f.path, f.original, f.edits, root));
    const base = diffBase(f.path, root);
    if (base !== process.cwd()) say(`adopt: note: the diff of ${f.path} is relative to ${base}; apply it there (git -C ${base} apply)`);
  }
}

/** Every input file is listed, with its error when it could not be read or rewritten. */
function printJson(result: PipelineResult, whyNot: boolean): void {
  process.stdout.write(JSON.stringify({
    sites: result.sites,
    ...(whyNot ? { near_misses: result.nearMisses } : {}),
    files: result.inputs.map((i) => ({ path: i.path, changed: i.changed, error: i.error })),
    ...(result.verification ? { verification: result.verification } : {}),
  }, null, 1) + '\n');
}

function printSummary(result: PipelineResult, written: FileResult[], opts: RewriteOptions, hidden: number): void {
  if (opts.whyNot) {
    for (const n of result.nearMisses) say(formatNearMiss(n));
    if (hidden) say(`adopt: ${hidden} more near miss(es) matched less of their pattern; --why-not=all shows them`);
  }
  // a file with a syntax error has said so once; its sites need not each say it again
  for (const s of result.sites) if (s.decision === 'skipped' && s.reason !== UNPARSED && (opts.whyNot || !opts.quiet)) say(`${s.file}:${s.lines[0]}: ${s.rule}: found, not rewritten: ${s.reason}`);
  // what was written, when writing: a file left unchanged does not count
  const writtenPaths = new Set(written.map((f) => f.path));
  const n = result.sites.filter((s) => s.decision === 'rewritten' && writtenPaths.has(s.file)).length;
  say(`adopt: ${result.sites.length} site(s) found, ${n} rewritten in ${written.length} file(s)`);
}
