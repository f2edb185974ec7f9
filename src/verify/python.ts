// Running the project's Python side (native/): Debian's /usr/bin/python3 with torch by default,
// or $ADOPT_PYTHON. Every call has a timeout and returns a value or a reason, never throws.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const NATIVE_DIR = fileURLToPath(new URL('../../native', import.meta.url));

export function pythonExecutable(): string {
  return process.env.ADOPT_PYTHON ?? '/usr/bin/python3';
}

export type PyResult = { ok: true; value: unknown } | { ok: false; error: string };

/** Runs `python -m module args...`, which prints one JSON object as its last stdout line. */
export function runPythonJson(module: string, args: string[], timeoutMs = 300_000): PyResult {
  const r = spawnSync(pythonExecutable(), ['-m', module, ...args], {
    encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024,
    env: { ...process.env, PYTHONPATH: [NATIVE_DIR, process.env.PYTHONPATH].filter(Boolean).join(':'), PYTHONDONTWRITEBYTECODE: '1' },
  });
  if (r.error) {
    const e = r.error as NodeJS.ErrnoException;
    return { ok: false, error: e.code === 'ENOENT' ? `${pythonExecutable()} not found (run scripts/setup-python.sh or set ADOPT_PYTHON)` : e.code === 'ETIMEDOUT' ? `timed out after ${timeoutMs / 1000}s` : e.message };
  }
  const last = r.stdout.trim().split('\n').pop() ?? '';
  try {
    return { ok: true, value: JSON.parse(last) };
  } catch {
    const err = (r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ');
    return { ok: false, error: `exit ${r.status}: ${err || 'no output'}` };
  }
}
