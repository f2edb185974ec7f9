// bench:real's verification. Every file the scoring pass rewrote is checked in torch exactly as it
// was rewritten, every rule in (no rule is dropped for speed, as `rewrite --verify` would: what is
// scored is what is verified), through the harness's file run (src/pipeline/check.ts), so
// "verified" means what it means everywhere else. A mismatching file is checked again with each of
// its rules' rewrites alone, to name the rule at fault. The benchmark's packages need torch 2.x;
// scripts/setup-torch2.sh makes a venv with it and the packages at their pins.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { checkFile, verdictOf, type VerifyStatus } from '../pipeline/index.js';
import type { ClassResult, FileCheckResult } from '../verify/file.js';

/** Where scripts/setup-torch2.sh puts the interpreter, relative to the repository. */
export const TORCH2_PYTHON = join('.cache', 'torch2', 'venv', 'bin', 'python');

export type Interpreter = { path: string; torch: string } | { error: string };

/** The interpreter verification runs with: `given` (--python), else the torch 2.x venv; it must
 *  import torch 2.x, since the labelled packages do not run on 1.x. */
export function verifyPython(root: string, given?: string): Interpreter {
  const path = given ?? join(root, TORCH2_PYTHON);
  const setup = 'run scripts/setup-torch2.sh, pass --python PATH, or skip verification with --no-verify';
  if (!existsSync(path)) return { error: `no Python with torch 2.x: ${path} does not exist (${setup})` };
  const r = spawnSync(path, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8', timeout: 300_000 });
  if (r.error || r.status !== 0) {
    const why = r.error?.message ?? (r.stderr.trim().split('\n').pop() || `exit ${r.status}`);
    return { error: `${path} cannot import torch (${why}); ${setup}` };
  }
  const torch = r.stdout.trim().split('\n').pop() ?? '';
  if (!/^2\./.test(torch)) return { error: `${path} has torch ${torch}; the benchmark's packages need torch 2.x (${setup})` };
  return { path, torch };
}

export interface ClassCounts { verified: number; mismatch: number; not_runnable: number }

export interface RuleAlone { rule: string; status: VerifyStatus; problems?: string[]; reason?: string }

export interface RealVerdict {
  file: string;
  status: VerifyStatus;
  rules: string[];
  classes: ClassCounts;
  /** Calls into adopt_kernels' fast-path functions and compiled kernels while the rewrite ran. */
  fast_path_calls: number;
  compiled_calls: number;
  reason?: string;
  problems?: string[];
  /** Classes that could not run, each with its short reason. */
  not_runnable?: string[];
  /** On a mismatch: each rule's rewrite of the file alone. */
  by_rule?: RuleAlone[];
}

export interface ToVerify {
  key: string;
  path: string;
  rewritten: string;
  rules: string[];
  /** The file rewritten by one rule alone, or why it could not be. */
  alone: (rule: string) => string | { error: string };
}

const short = (s: string | undefined) => (s ?? '').split('\n')[0].slice(0, 240);

function classCounts(results: ClassResult[]): ClassCounts {
  const n = (s: string) => results.filter((r) => r.status === s).length;
  return { verified: n('verified'), mismatch: n('mismatch'), not_runnable: n('not_runnable') };
}

const sum = (results: ClassResult[], k: 'fast_path_calls' | 'compiled_calls') => results.reduce((a, r) => a + Math.max(0, r[k] ?? 0), 0);

/** Runs the harness on an original and its rewritten variants (name → text). */
export type Checker = (path: string, variants: Record<string, string>) => FileCheckResult;

/** How the harness checks each file (part of every cached verdict's key). */
export const HARNESS_OPTIONS = { dtype: 'fp64', repeats: 0 } as const;

const harness: Checker = (path, variants) => checkFile(path, variants, { ...HARNESS_OPTIONS });

function byRule(f: ToVerify, check: Checker): RuleAlone[] {
  const variants: Record<string, string> = {};
  const out: RuleAlone[] = [];
  for (const rule of f.rules) {
    const text = f.alone(rule);
    if (typeof text === 'string') variants[rule] = text;
    else out.push({ rule, status: 'not_runnable', reason: `not rewritten alone: ${short(text.error)}` });
  }
  if (!Object.keys(variants).length) return out;
  const checked = check(f.path, variants);
  for (const rule of Object.keys(variants)) {
    const v = verdictOf(checked.ok ? { ...checked, results: checked.results.filter((r) => r.variant === rule) } : checked);
    out.push({ rule, status: v.status, ...(v.problems ? { problems: v.problems.slice(0, 3) } : {}), ...(v.reason && v.status !== 'verified' ? { reason: short(v.reason) } : {}) });
  }
  return out;
}

/** One rewritten file checked against its original (all its rules together; alone on a mismatch). */
export function verifyRewritten(f: ToVerify, check: Checker = harness): RealVerdict {
  const result = check(f.path, { rewritten: f.rewritten });
  const v = verdictOf(result);
  const results = result.ok ? result.results : [];
  const verdict: RealVerdict = {
    file: f.key, status: v.status, rules: f.rules, classes: classCounts(results),
    fast_path_calls: sum(results, 'fast_path_calls'), compiled_calls: sum(results, 'compiled_calls'),
  };
  if (v.status !== 'verified' && v.reason) verdict.reason = short(v.reason);
  if (v.problems) verdict.problems = v.problems.slice(0, 5);
  const failed = results.filter((r) => r.status === 'not_runnable').map((r) => `${r.class ?? r.model ?? '?'}: ${short(r.reason)}`);
  if (failed.length) verdict.not_runnable = failed;
  if (v.status === 'mismatch') verdict.by_rule = byRule(f, check);
  return verdict;
}

/** One line per file for the terminal. */
export function verdictLine(v: RealVerdict): string {
  const c = v.classes;
  const classes = `${c.verified} verified, ${c.mismatch} mismatch, ${c.not_runnable} not runnable of ${c.verified + c.mismatch + c.not_runnable} classes`;
  const head = `${v.status} (${v.rules.join(', ')}; ${classes}; fast path ${v.fast_path_calls} calls, compiled ${v.compiled_calls})`;
  const detail = v.status === 'mismatch' ? `: ${v.problems?.[0] ?? ''}${v.by_rule ? ` [alone: ${v.by_rule.map((r) => `${r.rule} ${r.status}`).join(', ')}]` : ''}`
    : v.status === 'not_runnable' ? `: ${v.reason ?? v.not_runnable?.[0] ?? ''}` : '';
  return head + detail.slice(0, 400);
}
