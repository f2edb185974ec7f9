// Vitest global setup: one warm Python (native/adopt_harness/forkserver.py) for the whole run.
// Every Python launch of the tests, and of the `adopt` processes they spawn, becomes a fork of it
// with torch already imported: about two CPU seconds saved per launch, and the run itself is
// unchanged (see src/verify/warm.ts). Without it the tests still pass, only slower.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { pythonEnv, resolvePython } from '../../src/verify/python.js';

export interface ForkServer { socket: string; python: string; stop: () => Promise<void> }

function ready(child: ChildProcess, timeoutMs: number): Promise<string | null> {
  return new Promise((done) => {
    const timer = setTimeout(() => done(`no answer in ${timeoutMs / 1000}s`), timeoutMs);
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-2000); });
    createInterface({ input: child.stdout! }).once('line', (line) => { clearTimeout(timer); done(line === 'ready' ? null : `said ${line}`); });
    child.on('exit', (code) => { clearTimeout(timer); done(`exited with ${code}: ${stderr.trim()}`); });
  });
}

/** Starts a fork server and waits until it listens; throws why when it cannot. */
export async function startForkServer(preload = 'torch,numpy'): Promise<ForkServer> {
  const python = resolvePython();
  if ('error' in python) throw new Error(python.error);
  const dir = mkdtempSync(join(tmpdir(), 'adopt-forkserver-'));
  const socket = join(dir, 'python.sock');
  const child = spawn(python.path, ['-m', 'adopt_harness.forkserver', socket, '--preload', preload], { env: pythonEnv(), stdio: ['pipe', 'pipe', 'pipe'] });
  const exited = new Promise((done) => child.once('exit', done));
  const stop = async () => {
    child.stdin!.end();
    // waited for, so that its CPU time and its children's count in the run's
    await Promise.race([exited, new Promise((done) => setTimeout(done, 10_000))]);
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  const why = await ready(child, 120_000);
  if (why) {
    await stop();
    throw new Error(why);
  }
  return { socket, python: python.path, stop };
}

export default async function setup(): Promise<() => Promise<void>> {
  if (process.env.ADOPT_NO_FORKSERVER) return async () => {};
  try {
    const server = await startForkServer();
    process.env.ADOPT_FORKSERVER = server.socket;
    process.env.ADOPT_FORKSERVER_PYTHON = server.python;
    return server.stop;
  } catch (e) {
    console.warn(`adopt tests: no warm Python (${(e as Error).message}); every launch starts a fresh interpreter`);
    return async () => {};
  }
}
