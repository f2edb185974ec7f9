// `adopt rewrite`: options, then the pipeline, then printing (a diff, JSON or a summary) and the
// exit code of the shared policy (./policy.ts).
import { AdoptError, formatDiagnostic } from '../diag.js';
import { runPipeline, withholdMeasuredSlower, writeInPlace, writeTo, type PipelineResult, type Written } from '../pipeline/index.js';
import { diffBase, unifiedDiff } from '../synth/diff.js';
import type { FileResult } from '../synth/synthesize.js';
import { exitCode, NOTHING_TO_ANALYSE } from './policy.js';

// the pipeline's entry for callers that used to find it here
export { runRewrite } from '../pipeline/index.js';

export interface RewriteOptions {
  rules?: string; root?: string; inPlace?: boolean; backup?: boolean; output?: string;
  json?: boolean; check?: boolean; whyNot?: boolean; quiet?: boolean;
  verify?: boolean; config?: string; repeats?: string; learned?: boolean;
}

function checkOptions(opts: RewriteOptions): void {
  const modes = [opts.inPlace, !!opts.output, opts.check].filter(Boolean).length;
  if (modes > 1) throw new AdoptError('choose one of --in-place, -o/--output and --check');
  if (opts.backup && !opts.inPlace) throw new AdoptError('--backup only goes with --in-place');
  if ((opts.config || opts.repeats) && !opts.verify) throw new AdoptError('--config and --repeats only go with --verify');
  if (opts.repeats && !/^\d+$/.test(opts.repeats)) throw new AdoptError(`--repeats must be a whole number, got '${opts.repeats}'`);
}

const say = (line: string) => process.stderr.write(`${line}\n`);

export function rewriteCommand(paths: string[], opts: RewriteOptions): number {
  checkOptions(opts);
  const named = new Set((opts.rules ?? '').split(',').map((x) => x.trim()));
  const result = runPipeline(paths, {
    rules: opts.rules, root: opts.root,
    withhold: opts.learned === false ? undefined : withholdMeasuredSlower(named),
    verify: opts.verify ? { config: opts.config, repeats: Number(opts.repeats ?? 20), say: opts.json ? () => {} : say } : undefined,
  });
  for (const f of result.plan.program.files) for (const d of f.diagnostics) if (d.severity === 'error') say(formatDiagnostic(d));
  for (const f of result.files) if (f.error) say(`adopt: error: ${f.error}`);
  const changed = result.files.filter((f) => !f.error && f.rewritten !== f.original);
  const emitted: Written = opts.inPlace ? writeInPlace(changed, !!opts.backup) : opts.output ? writeTo(opts.output, changed, paths) : { written: changed, errors: [] };
  for (const e of emitted.errors) say(`adopt: error: ${e}`);

  if (opts.json) printJson(result, !!opts.whyNot);
  else {
    if (!opts.inPlace && !opts.output && !opts.check) printDiffs(changed, opts.root);
    printSummary(result, emitted.written, opts);
  }
  if (result.empty) process.stderr.write(NOTHING_TO_ANALYSE);
  return exitCode({
    inputErrors: result.inputs.filter((i) => i.error).length, empty: result.empty,
    failures: emitted.errors.length, differs: opts.check && changed.length > 0,
  });
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

function printSummary(result: PipelineResult, written: FileResult[], opts: RewriteOptions): void {
  if (opts.whyNot) for (const n of result.nearMisses) say(`${n.file}:${n.line}:${n.col}: ${n.rule}: not a site: ${n.reason}`);
  for (const s of result.sites) if (s.decision === 'skipped' && (opts.whyNot || !opts.quiet)) say(`${s.file}:${s.lines[0]}: ${s.rule}: found, not rewritten: ${s.reason}`);
  // what was written, when writing: a file left unchanged does not count
  const writtenPaths = new Set(written.map((f) => f.path));
  const n = result.sites.filter((s) => s.decision === 'rewritten' && (!opts.inPlace || writtenPaths.has(s.file))).length;
  say(`adopt: ${result.sites.length} site(s) found, ${n} rewritten in ${written.length} file(s)`);
}
