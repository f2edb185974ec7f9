// Runs a Python script beside an original model file and its rewrite, for the tests that check in
// torch what a rewritten model computes after what users do to models (modules swapped or
// reconfigured, methods patched, dtypes mixed).
import { spawnSync } from 'node:child_process';
import { expect } from 'vitest';
import { pythonEnv, pythonExecutable } from '../../src/verify/python.js';

const PRELUDE = `
import importlib.util, json, sys

def load(path, name):
    """The module a file defines, imported under its own name (imported again for each call)."""
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod

ORIGINAL, REWRITTEN, ARGS = sys.argv[1], sys.argv[2], sys.argv[3:]
`;

/** The script runs after a prelude giving it `load(path, name)`, the two files' paths as
 *  `ORIGINAL` and `REWRITTEN` and further arguments as `ARGS`; it must exit 0, and the JSON of
 *  the last line it prints is returned. */
export function besideOriginal<T>(original: string, rewritten: string, script: string, opts: { args?: string[]; env?: Record<string, string> } = {}): T {
  const r = spawnSync(pythonExecutable(), ['-c', PRELUDE + script, original, rewritten, ...(opts.args ?? [])], {
    env: pythonEnv({ env: opts.env }), encoding: 'utf8', maxBuffer: 16 * 1024 * 1024,
  });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as T;
}
