import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

export interface CliResult { code: number; stdout: string; stderr: string }

/** Runs the built `adopt` CLI as a user would. */
export function adopt(args: string[], opts: { cwd?: string; input?: string; env?: Record<string, string> } = {}): CliResult {
  const r = spawnSync(process.execPath, [`${repoRoot}/bin/adopt.js`, ...args], {
    cwd: opts.cwd ?? repoRoot, encoding: 'utf8', input: opts.input, env: { ...process.env, ...opts.env }, maxBuffer: 256 * 1024 * 1024,
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** A stack trace or an internal error must never reach the user. */
export function looksLikeCrash(stderr: string): boolean {
  return /\n\s+at .+\(.+:\d+:\d+\)|internal error|TypeError|ReferenceError/.test(stderr);
}
