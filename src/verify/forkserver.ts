// A warm Python (native/adopt_harness/forkserver.py) for a process that launches the harness many
// times: torch is imported once, and each launch whose interpreter is the server's becomes a fork
// of it (src/verify/warm.ts). Used by the test suite and by bench:real's verification.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { createInterface } from 'node:readline';
import { pythonEnv, resolvePython } from './python.js';

export interface ForkServer {
  socket: string;
  python: string;
  /** What the server said about itself while starting (a file it could not preload). */
  notes: string[];
  stop: () => Promise<void>;
}

function ready(child: ChildProcess, timeoutMs: number, notes: string[]): Promise<string | null> {
  return new Promise((done) => {
    const timer = setTimeout(() => done(`no answer in ${timeoutMs / 1000}s`), timeoutMs);
    let stderr = '';
    createInterface({ input: child.stderr! }).on('line', (line) => {
      stderr = `${stderr}${line}\n`.slice(-2000);
      if (line.startsWith('forkserver: ')) notes.push(line.slice('forkserver: '.length));
    });
    createInterface({ input: child.stdout! }).once('line', (line) => { clearTimeout(timer); done(line === 'ready' ? null : `said ${line}`); });
    child.on('exit', (code) => { clearTimeout(timer); done(`exited with ${code}: ${stderr.trim()}`); });
  });
}

/** Starts a fork server and waits until it listens; throws why when it cannot. `files`: model
 *  files it imports once as the file harness imports an original (their packages with them), for
 *  a process that checks those files. */
export async function startForkServer(preload = 'torch,numpy', files: string[] = []): Promise<ForkServer> {
  const python = resolvePython();
  if ('error' in python) throw new Error(python.error);
  const dir = mkdtempSync(join(tmpdir(), 'adopt-forkserver-'));
  const socket = join(dir, 'python.sock');
  const args = ['-m', 'adopt_harness.forkserver', socket, '--preload', preload, ...(files.length ? ['--preload-files', files.join(delimiter)] : [])];
  const child = spawn(python.path, args, { env: pythonEnv(), stdio: ['pipe', 'pipe', 'pipe'] });
  const exited = new Promise((done) => child.once('exit', done));
  const stop = async () => {
    child.stdin!.end();
    // waited for, so that its CPU time and its children's count in the run's
    await Promise.race([exited, new Promise((done) => setTimeout(done, 10_000))]);
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  // a package's first file can take a minute to import on a loaded machine; its others far less
  const notes: string[] = [];
  const why = await ready(child, 120_000 + 30_000 * files.length, notes);
  if (why) {
    await stop();
    throw new Error(why);
  }
  return { socket, python: python.path, notes, stop };
}

/** Starts a server for the resolved interpreter and points this process's launches at it; the
 *  returned function stops it. Without one (it does not start), launches start fresh interpreters. */
export async function warmLaunches(preload = 'torch,numpy', files: string[] = []): Promise<{ stop: () => Promise<void>; notes: string[] } | { error: string }> {
  try {
    const server = await startForkServer(preload, files);
    process.env.ADOPT_FORKSERVER = server.socket;
    process.env.ADOPT_FORKSERVER_PYTHON = server.python;
    return { stop: server.stop, notes: server.notes };
  } catch (e) {
    return { error: (e as Error).message };
  }
}
