// A warm interpreter (native/adopt_harness/forkserver.py) for processes that launch Python many
// times: when $ADOPT_FORKSERVER names the server's socket and the run uses the interpreter it was
// started with ($ADOPT_FORKSERVER_PYTHON), the run is a fork of that server, torch already
// imported, instead of a fresh interpreter. Same argv, environment, directory and descriptors;
// the client falls back to a fresh interpreter when the server does not answer.
import { join } from 'node:path';
import { NATIVE_DIR } from './native.js';

const CLIENT = join(NATIVE_DIR, 'adopt_harness', 'forkclient.py');

/** The argv to spawn `python args...` with: through the fork server where one is offered. */
export function launchArgs(python: string, args: string[]): string[] {
  const socket = process.env.ADOPT_FORKSERVER;
  if (!socket || process.env.ADOPT_FORKSERVER_PYTHON !== python) return args;
  // -S: the client needs no site-packages, and starts in a few milliseconds without them
  return ['-S', CLIENT, socket, ...args];
}
