// The pipeline, the one API that the command line and the benchmarks call:
//   analyse → match → synthesize → tune → verify → emit.
// Analysis and matching run once (the plan); synthesis runs on the plan's sites less those held
// back (measured slower before, or rejected by verification); emit writes what was kept.
import { analyzePaths } from '../analysis/analyze.js';
import type { ProjectOptions } from '../analysis/project.js';
import type { Program } from '../dsl/ir.js';
import { formatDiagnostic } from '../diag.js';
import { planRewrite, synthesizePlan, timedSynthesis, type PlanOptions, type RewritePlan, type StageTimes } from './plan.js';
import { verifiedRewrite, type RuleVerifyOptions } from './rule-verify.js';
import type { RewriteRun, Withhold } from './types.js';

export { planRewrite, synthesizePlan, type PlanOptions, type RewritePlan, type StageTimes } from './plan.js';
export { exercisedOnly, MEASURED_ON, verifiedRewrite, type RuleVerifyOptions } from './rule-verify.js';
export type { FileVerification, RewriteRun, RuleVerdict, Stage, StageEvent, Withhold } from './types.js';
export { checkFile, verdictOf, type PhaseTiming, type Verdict, type VerifyStatus } from './check.js';
export { fileVerifier, hfVerifier, verifyModels, type HfHarness, type ModelVerdict, type Verifier, type VerifyProgress, type VerifyTarget } from './model-verify.js';
export { withholdMeasuredSlower } from './learned.js';
export { destinationsUnder, writeInPlace, writeMirror, writeTo, type Written } from './emit.js';

/** The tuner's place in the pipeline: given the plan and the rewrites kept (after verification,
 *  when asked for), the run with each rewrite's kernel schedule chosen. No caller fills it yet. */
export type TuneStage = (plan: RewritePlan, run: RewriteRun) => RewriteRun;

export interface PipelineOptions extends PlanOptions {
  /** Sites to leave alone, with the reason (e.g. measured slower before). */
  withhold?: Withhold;
  tune?: TuneStage;
  /** Keep only the rules whose rewrites verify in torch and are not slower. */
  verify?: RuleVerifyOptions;
}

/** An input file and, when it could not be read or analysed in full, the first error. */
export interface InputFile { path: string; changed: boolean; error: string | null }

export interface PipelineResult extends RewriteRun {
  plan: RewritePlan;
  /** Every input file, readable or not. */
  inputs: InputFile[];
  /** True when no input holds an nn.Module class or a function: nothing to work on. */
  empty: boolean;
  times: StageTimes;
}

/** The analysis stage alone (`adopt explain`): the IR of every input file, with its diagnostics. */
export function analyse(paths: string[], opts: ProjectOptions = {}): Program {
  return analyzePaths(paths, opts).program;
}

/** The first error diagnostic of each input file (null for a file read and analysed in full). */
export function inputErrors(program: Program): Map<string, string | null> {
  return new Map(program.files.map((f) => {
    const e = f.diagnostics.find((d) => d.severity === 'error');
    return [f.path, e ? formatDiagnostic(e) : null];
  }));
}

/** True when no file of the program holds anything to analyse. */
export function isEmptyProgram(program: Program): boolean {
  // a file that could not be read has already said why: "nothing to analyse" would mislead
  const readable = program.files.filter((f) => !f.diagnostics.some((d) => d.severity === 'error'));
  return readable.length > 0 && readable.every((f) => f.modules.length === 0 && f.functions.length === 0);
}

/** Why a site in a file with a syntax error is left alone. */
export const UNPARSED = 'the file has a syntax error: it is not rewritten';

/** The files of the program that do not parse. */
export function filesWithSyntaxErrors(program: Program): Set<string> {
  return new Set(program.files.filter((f) => f.diagnostics.some((d) => d.severity === 'error' && d.code === 'syntax')).map((f) => f.path));
}

/** The whole pipeline on `paths`. Writes nothing: emit with writeInPlace / writeTo. */
export function runPipeline(paths: string[], opts: PipelineOptions = {}): PipelineResult {
  const plan = planRewrite(paths, opts);
  // a file that does not parse is analysed around its errors, but what is around them is
  // tree-sitter's guess: an edit there could land in code Python reads differently
  const unparsed = filesWithSyntaxErrors(plan.program);
  const withhold: Withhold = (s) => (unparsed.has(s.file) ? UNPARSED : opts.withhold?.(s) ?? null);
  let run: RewriteRun;
  let times: StageTimes;
  if (opts.verify) {
    // verification synthesises rule by rule itself, and keeps what verifies
    const t0 = performance.now();
    plan.onStage({ stage: 'verify', files: plan.program.files.length });
    run = verifiedRewrite(plan, withhold, opts.verify);
    const verify = (performance.now() - t0) / 1000;
    plan.onStage({ stage: 'verify', files: plan.program.files.length, seconds: verify });
    times = { ...plan.times, synthesize: 0, verify, total: plan.times.analyse + plan.times.match + verify };
  } else ({ run, times } = timedSynthesis(plan, withhold));
  if (opts.tune) run = opts.tune(plan, run);
  const changed = new Set(run.files.filter((f) => !f.error && f.rewritten !== f.original).map((f) => f.path));
  const synthErrors = new Map(run.files.filter((f) => f.error).map((f) => [f.path, f.error!]));
  const inputs = [...inputErrors(plan.program)].map(([path, error]) => ({ path, changed: changed.has(path), error: error ?? synthErrors.get(path) ?? null }));
  // a helper module outside the inputs that a rewrite reached is listed too
  for (const f of run.files) if (!inputs.some((i) => i.path === f.path)) inputs.push({ path: f.path, changed: changed.has(f.path), error: f.error ?? null });
  return { ...run, plan, inputs, empty: isEmptyProgram(plan.program), times };
}

/** Analyse, match and synthesize only: what most tests and `rules test` need. */
export function runRewrite(paths: string[], opts: PlanOptions = {}): RewriteRun {
  return synthesizePlan(planRewrite(paths, opts));
}
