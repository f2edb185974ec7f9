// The one way the TypeScript side launches Python. The interpreter is resolved once: $ADOPT_PYTHON,
// else Debian's /usr/bin/python3 (which has torch), else python3 on PATH. Every launch gets
// PYTHONPATH with native/ first. Harness runs speak JSON lines (native/adopt_harness/protocol.py):
// progress is streamed to the caller as it comes and results are validated against the schema.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { createInterface } from 'node:readline';
import { NATIVE_DIR } from './native.js';
import { launchArgs } from './warm.js';
import { readLine, type Harness, type Progress, type ResultOf } from './results.js';

export { NATIVE_DIR };

const HARNESS_MODULES: Record<Harness, string> = {
  pair: 'adopt_harness.check_pair', file: 'adopt_harness.verify_file', hf: 'adopt_harness.hf_verify', hf_lm: 'adopt_harness.hf_lm_verify', speed: 'adopt_harness.speed',
};

let resolved: { path: string } | { error: string } | null = null;

function onPath(name: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) if (dir && existsSync(join(dir, name))) return join(dir, name);
  return null;
}

/** The interpreter, or why there is none (resolved once per process). */
export function resolvePython(): { path: string } | { error: string } {
  if (resolved) return resolved;
  const chosen = process.env.ADOPT_PYTHON || (existsSync('/usr/bin/python3') ? '/usr/bin/python3' : onPath('python3'));
  resolved = chosen ? { path: chosen } : { error: 'no Python found: $ADOPT_PYTHON is not set, and neither /usr/bin/python3 nor python3 on PATH exists (run scripts/setup-python.sh or set ADOPT_PYTHON)' };
  return resolved;
}

/** The interpreter's path; throws the one clear error when there is none. */
export function pythonExecutable(): string {
  const r = resolvePython();
  if ('error' in r) throw new Error(r.error);
  return r.path;
}

export interface Launch {
  /** Directories put on PYTHONPATH after native/ (installed dependencies). */
  pythonPath?: string[];
  /** Variables set for this launch only. */
  env?: Record<string, string>;
  timeoutMs?: number;
  /** An interpreter to use instead of the resolved one (tests, a measurer told which). */
  python?: string;
}

export function pythonEnv(l: Launch = {}): NodeJS.ProcessEnv {
  return {
    ...process.env, ...l.env,
    PYTHONPATH: [NATIVE_DIR, ...(l.pythonPath ?? []), l.env?.PYTHONPATH, process.env.PYTHONPATH].filter(Boolean).join(':'),
    PYTHONDONTWRITEBYTECODE: '1', PYTHONUNBUFFERED: '1',
  };
}

export type Ran = { ok: true; stdout: string; stderr: string; status: number | null } | { ok: false; error: string };

function failure(e: NodeJS.ErrnoException, python: string, timeoutMs: number): string {
  if (e.code === 'ENOENT') return `${python} not found (run scripts/setup-python.sh or set ADOPT_PYTHON)`;
  if (e.code === 'ETIMEDOUT') return `timed out after ${timeoutMs / 1000}s`;
  return e.message;
}

function tail(text: string): string {
  return text.trim().split('\n').slice(-3).join(' | ');
}

/** Runs `python args...` to completion (argv after the interpreter: `-m module ...` or `-c code`). */
export function runPython(args: string[], l: Launch & { input?: string } = {}): Ran {
  const found = l.python ? { path: l.python } : resolvePython();
  if ('error' in found) return { ok: false, error: found.error };
  const timeoutMs = l.timeoutMs ?? 300_000;
  const r = spawnSync(found.path, launchArgs(found.path, args), { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 256 * 1024 * 1024, env: pythonEnv(l), input: l.input });
  if (r.error) return { ok: false, error: failure(r.error as NodeJS.ErrnoException, found.path, timeoutMs) };
  return { ok: true, stdout: r.stdout, stderr: r.stderr, status: r.status };
}

/** For modules outside the harness that print one JSON object as their last stdout line (the
 *  kernel CLI, the kernel registry). Returns the value or why there is none; never throws. */
export function runPythonJson(module: string, args: string[], timeoutMs = 300_000, l: Launch = {}): { ok: true; value: unknown } | { ok: false; error: string } {
  const r = runPython(['-m', module, ...args], { ...l, timeoutMs });
  if (!r.ok) return r;
  const last = r.stdout.trim().split('\n').pop() ?? '';
  try {
    return { ok: true, value: JSON.parse(last) };
  } catch {
    return { ok: false, error: `exit ${r.status}: ${tail(r.stderr || r.stdout) || 'no output'}` };
  }
}

export type HarnessRun<H extends Harness> = { ok: true; results: ResultOf[H][]; progress: Progress[] } | { ok: false; error: string; results: ResultOf[H][] };

/** One line of a harness's stdout into `into`; a malformed line ends the run with its reason. */
function take<H extends Harness>(harness: H, line: string, into: { results: ResultOf[H][]; progress: Progress[] }, onProgress?: (p: Progress) => void, onResult?: (r: ResultOf[H]) => void): void {
  if (!line.trim()) return;
  const read = readLine(harness, line);
  if (read.kind === 'progress') {
    into.progress.push(read.progress);
    onProgress?.(read.progress);
  } else {
    into.results.push(read.result);
    onResult?.(read.result);
  }
}

function exitError(harness: Harness, status: number | null, signal: NodeJS.Signals | null, stderr: string): string | null {
  if (status === 0) return null;
  return `the ${harness} harness exited with ${status ?? signal}${stderr.trim() ? `: ${tail(stderr)}` : ''}`;
}

/** Runs a harness to completion and returns its validated results (progress collected afterwards). */
export function runHarness<H extends Harness>(harness: H, args: string[], l: Launch = {}): HarnessRun<H> {
  const r = runPython(['-m', HARNESS_MODULES[harness], ...args], l);
  const into = { results: [] as ResultOf[H][], progress: [] as Progress[] };
  if (!r.ok) return { ok: false, error: r.error, results: [] };
  try {
    for (const line of r.stdout.split('\n')) take(harness, line, into);
  } catch (e) {
    return { ok: false, error: (e as Error).message, results: into.results };
  }
  const exited = exitError(harness, r.status, null, r.stderr);
  return exited ? { ok: false, error: exited, results: into.results } : { ok: true, ...into };
}

export interface Streaming<H extends Harness> extends Launch {
  onProgress?: (p: Progress) => void;
  onResult?: (r: ResultOf[H]) => void;
  /** Where the harness's stderr goes: kept (the last lines go into an error) or shown as it comes. */
  stderr?: 'keep' | 'inherit';
}

export interface LineStream extends Launch {
  /** Written to the process's stdin, which is then closed. */
  input?: string;
  /** Where stderr goes: kept (its last 4000 characters are returned) or shown as it comes. */
  stderr?: 'keep' | 'inherit';
  /** Called with each stdout line as it comes; a throw ends the process and becomes the error. */
  onLine: (line: string) => void;
}

export interface Ended { code: number | null; signal: NodeJS.Signals | null; stderr: string; error?: string }

/** Runs `python args...`, handing each stdout line to `onLine` as it comes. */
export function streamPython(args: string[], l: LineStream): Promise<Ended> {
  const found = l.python ? { path: l.python } : resolvePython();
  if ('error' in found) return Promise.resolve({ code: null, signal: null, stderr: '', error: found.error });
  return new Promise((done) => {
    const child = spawn(found.path, launchArgs(found.path, args), { env: pythonEnv(l), stdio: ['pipe', 'pipe', l.stderr === 'inherit' ? 'inherit' : 'pipe'] });
    let stderr = '';
    let error: string | undefined;
    const timer = l.timeoutMs ? setTimeout(() => { error ??= `timed out after ${l.timeoutMs! / 1000}s`; child.kill('SIGKILL'); }, l.timeoutMs) : null;
    child.stderr?.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4000); });
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (error) return;
      try { l.onLine(line); } catch (e) { error = (e as Error).message; child.kill('SIGKILL'); }
    });
    child.on('error', (e) => { error ??= failure(e as NodeJS.ErrnoException, found.path, l.timeoutMs ?? 0); });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      done({ code, signal, stderr, error });
    });
    child.stdin!.on('error', () => { /* a process that exits without reading its input */ });
    child.stdin!.end(l.input ?? '');
  });
}

export interface Streaming<H extends Harness> extends Launch {
  onProgress?: (p: Progress) => void;
  onResult?: (r: ResultOf[H]) => void;
  stderr?: 'keep' | 'inherit';
}

/** Runs a harness, streaming its progress and results to the callbacks as each line comes. */
export async function streamHarness<H extends Harness>(harness: H, args: string[], l: Streaming<H> = {}): Promise<HarnessRun<H>> {
  const into = { results: [] as ResultOf[H][], progress: [] as Progress[] };
  const end = await streamPython(['-m', HARNESS_MODULES[harness], ...args], { ...l, onLine: (line) => take(harness, line, into, l.onProgress, l.onResult) });
  const why = end.error ?? exitError(harness, end.code, end.signal, end.stderr);
  return why ? { ok: false, error: why, results: into.results } : { ok: true, ...into };
}
