// The front half of the pipeline: analysis and matching, done once (the plan), then synthesis of
// any subset of the plan's sites, so rule-by-rule verification and per-rule benchmarks resynthesise
// without analysing again.
import { analyzePaths } from '../analysis/analyze.js';
import type { Project } from '../analysis/project.js';
import type { Program } from '../dsl/ir.js';
import { matchProgram, type NearMiss, type Site } from '../match/matcher.js';
import { loadRules, type Rule } from '../match/rule.js';
import { synthesize, type SiteResult } from '../synth/synthesize.js';
import type { RewriteRun, StageEvent, Withhold } from './types.js';

/** `rules`: a `--rules` spec (names, a file or a directory), or rules already resolved. */
export interface PlanOptions {
  rules?: string | Rule[];
  /** False drops the built-in rule library (`--no-builtin-rules`). */
  builtinRules?: boolean;
  root?: string;
  maxBytes?: number;
  /** Near misses searched harder (`--why-not`): attempts that miss their first lines too. */
  whyNot?: unknown;
  onStage?: (e: StageEvent) => void;
}

/** Seconds spent in each stage. */
export interface StageTimes { analyse: number; match: number; synthesize: number; verify?: number; total: number }

/** Analysis and matching, done once; synthesis can then run on any subset of the sites. */
export interface RewritePlan {
  rules: Rule[];
  program: Program;
  sites: Site[];
  nearMisses: NearMiss[];
  lookup: (p: string) => ReturnType<Project['parsedFile']>;
  times: { analyse: number; match: number };
  onStage: (e: StageEvent) => void;
}

const seconds = (t0: number) => (performance.now() - t0) / 1000;

export function planRewrite(paths: string[], opts: PlanOptions = {}): RewritePlan {
  const rules = Array.isArray(opts.rules) ? opts.rules : loadRules(opts.rules, { builtin: opts.builtinRules });
  const on = opts.onStage ?? (() => {});
  const t0 = performance.now();
  on({ stage: 'analyse', files: paths.length });
  const { program, project } = analyzePaths(paths, { root: opts.root, maxBytes: opts.maxBytes });
  const analyse = seconds(t0);
  on({ stage: 'analyse', files: program.files.length, seconds: analyse });
  const t1 = performance.now();
  on({ stage: 'match', files: program.files.length });
  const { sites, nearMisses } = matchProgram(program, rules, { partial: !!opts.whyNot });
  const match = seconds(t1);
  on({ stage: 'match', files: program.files.length, seconds: match });
  return { rules, program, sites, nearMisses, lookup: (p) => project.parsedFile(p), times: { analyse, match }, onStage: on };
}

/** Synthesis of the plan's sites, less those `withhold` gives a reason to leave alone. */
export function synthesizePlan(plan: RewritePlan, withhold: Withhold = () => null): RewriteRun {
  const kept: Site[] = [];
  const held: SiteResult[] = [];
  for (const s of plan.sites) {
    const why = withhold(s);
    if (why === null) kept.push(s);
    else held.push({ rule: s.rule, file: s.file, owner: s.owner, method: s.method, lines: s.lines, bindings: {}, guards: [], decision: 'skipped', reason: why });
  }
  const synth = synthesize(kept, plan.rules, plan.lookup);
  const sites = [...synth.sites, ...held].sort((a, b) => a.file.localeCompare(b.file) || a.lines[0] - b.lines[0]);
  return { files: synth.files, sites, nearMisses: plan.nearMisses };
}

/** Synthesis timed, for the stage report. */
export function timedSynthesis(plan: RewritePlan, withhold?: Withhold): { run: RewriteRun; times: StageTimes } {
  const t0 = performance.now();
  const files = new Set(plan.sites.map((s) => s.file)).size;
  plan.onStage({ stage: 'synthesize', files });
  const run = synthesizePlan(plan, withhold);
  const synth = seconds(t0);
  plan.onStage({ stage: 'synthesize', files, seconds: synth });
  return { run, times: { ...plan.times, synthesize: synth, total: plan.times.analyse + plan.times.match + synth } };
}
