// The rewrite pipeline without its outputs: analysis and matching once (the plan), then synthesis
// of any subset of the plan's sites, so `--verify` can rewrite rule by rule without re-analysing.
import { analyzePaths } from '../analysis/analyze.js';
import type { Project } from '../analysis/project.js';
import { AdoptError, formatDiagnostic } from '../diag.js';
import { matchProgram, type NearMiss, type Site } from '../match/matcher.js';
import { loadRules, type Rule } from '../match/rule.js';
import { synthesize, type FileResult, type SiteResult } from '../synth/synthesize.js';
import type { FileVerification } from './verified.js';

export interface RewriteRun { files: FileResult[]; sites: SiteResult[]; nearMisses: NearMiss[]; verification?: FileVerification[] }

/** Analysis and matching, done once; synthesis can then run on any subset of the sites. */
export interface RewritePlan { rules: Rule[]; sites: Site[]; nearMisses: NearMiss[]; lookup: (p: string) => ReturnType<Project['parsedFile']> }

export function planRewrite(paths: string[], opts: { rules?: string; root?: string; maxBytes?: number }): RewritePlan {
  const rules = loadRules(opts.rules);
  const { program, project } = analyzePaths(paths, { root: opts.root, maxBytes: opts.maxBytes });
  for (const f of program.files) for (const d of f.diagnostics) if (d.severity === 'error') process.stderr.write(`${formatDiagnostic(d)}\n`);
  if (program.files.every((f) => f.diagnostics.some((d) => d.severity === 'error' && !['syntax', 'analysis'].includes(d.code)))) {
    throw new AdoptError('nothing can be rewritten: no input file could be read');
  }
  const { sites, nearMisses } = matchProgram(program, rules);
  return { rules, sites, nearMisses, lookup: (p) => project.parsedFile(p) };
}

/** Synthesis of the plan's sites, less those `withhold` gives a reason to leave alone. */
export function synthesizePlan(plan: RewritePlan, withhold: (s: Site) => string | null = () => null): RewriteRun {
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

/** The whole pipeline: analyse, match, synthesise. Writes nothing. */
export function runRewrite(paths: string[], opts: { rules?: string; root?: string }): RewriteRun {
  return synthesizePlan(planRewrite(paths, opts));
}

