// The warm Python the test run launches through (native/adopt_harness/forkserver.py): a run
// forked from it must look to its caller exactly like a fresh interpreter, and one whose
// caller gives up must not outlive it.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runPython } from '../src/verify/python.js';
import { tempProject } from './helpers/ir.js';
import { startForkServer, type ForkServer } from './helpers/python-server.js';

let server: ForkServer;
const saved = { socket: process.env.ADOPT_FORKSERVER, python: process.env.ADOPT_FORKSERVER_PYTHON };

// `fractions` is what this server preloads: a fresh interpreter has not imported it at startup
beforeAll(async () => { server = await startForkServer('fractions'); });
afterAll(async () => {
  restore();
  await server?.stop();
});

function restore(): void {
  for (const [k, v] of [['ADOPT_FORKSERVER', saved.socket], ['ADOPT_FORKSERVER_PYTHON', saved.python]] as const) {
    if (v === undefined) delete process.env[k]; else process.env[k] = v;
  }
}

/** Runs with the given server socket offered (or none), the interpreter being the server's. */
function through<T>(socket: string | null, run: () => T): T {
  if (socket) { process.env.ADOPT_FORKSERVER = socket; process.env.ADOPT_FORKSERVER_PYTHON = server.python; } else { delete process.env.ADOPT_FORKSERVER; }
  try { return run(); } finally { restore(); }
}

const PROBE = `
import os, sys, warnings
warm = 'fractions' in sys.modules
import helper
print(sys.argv[1:], os.getcwd(), os.environ.get('PROBE'), helper.NAME, __name__)
print(sys.stdin.read().upper(), end='')
warnings.warn('careful')
print('to stderr', file=sys.stderr)
print('warm' if warm else 'fresh', file=sys.stderr)
sys.exit(int(sys.argv[1]))
`;

describe('runs through the fork server', () => {
  it('give the caller what a fresh interpreter gives: output, exit status, argv, directory, environment, PYTHONPATH, stdin', () => {
    const dir = tempProject({ 'lib/helper.py': 'NAME = "helper from PYTHONPATH"\n', 'work/.keep': '' });
    const launch = { env: { PROBE: 'set', PYTHONPATH: join(dir, 'lib') }, input: 'piped in\n' };
    const run = () => {
      const cwd = process.cwd();
      process.chdir(join(dir, 'work'));
      try { return runPython(['-c', PROBE, '3', 'x y'], launch); } finally { process.chdir(cwd); }
    };
    const fresh = through(null, run);
    const forked = through(server.socket, run);
    for (const r of [fresh, forked]) expect(r.ok, JSON.stringify(r)).toBe(true);
    if (!fresh.ok || !forked.ok) return;
    expect(fresh.stderr).toMatch(/fresh\n$/);
    expect(forked.stderr).toMatch(/warm\n$/);
    expect(forked).toMatchObject({ status: 3, stdout: fresh.stdout, stderr: fresh.stderr.replace(/fresh\n$/, 'warm\n') });
    expect(forked.stdout).toBe(`['3', 'x y'] ${join(dir, 'work')} set helper from PYTHONPATH __main__\nPIPED IN\n`);
    expect(forked.stderr).toMatch(/UserWarning: careful\n/);
  });

  it('-m modules and -W options, an uncaught exception and a death by signal read as they would', () => {
    const cases: string[][] = [
      ['-W', 'ignore', '-c', 'import warnings; warnings.warn("hidden"); print("quiet")'],
      ['-m', 'json.tool', '--help'],
      ['-c', 'raise ValueError("bad value")'],
      ['-c', 'import os, signal; os.kill(os.getpid(), signal.SIGKILL)'],
    ];
    for (const args of cases) {
      const fresh = through(null, () => runPython(args));
      const forked = through(server.socket, () => runPython(args));
      expect(forked, args.join(' ')).toEqual(fresh);
    }
  });

  it('a run whose caller gives up (a timeout) is ended with its caller', async () => {
    const dir = tempProject({});
    const pidFile = join(dir, 'pid');
    const code = `import os, time\nopen(${JSON.stringify(pidFile)}, 'w').write(str(os.getpid()))\ntime.sleep(120)\n`;
    const r = through(server.socket, () => runPython(['-c', code], { timeoutMs: 4000 }));
    expect(r).toMatchObject({ ok: false, error: 'timed out after 4s' });
    expect(existsSync(pidFile)).toBe(true);
    const pid = Number(readFileSync(pidFile, 'utf8'));
    const alive = () => { try { process.kill(pid, 0); return true; } catch { return false; } };
    for (let i = 0; i < 50 && alive(); i++) await new Promise((done) => setTimeout(done, 100));
    expect(alive()).toBe(false);
  });

  it('a run setting what an interpreter reads only at startup (a thread count) gets a fresh one', () => {
    const threads = String(Number(process.env.OMP_NUM_THREADS ?? 1) + 2);
    const probe = ['-c', 'import os, sys; print("fractions" in sys.modules, os.environ["OMP_NUM_THREADS"])'];
    const r = through(server.socket, () => runPython(probe, { env: { OMP_NUM_THREADS: threads } }));
    expect(r).toMatchObject({ ok: true, status: 0, stdout: `False ${threads}\n` });
  });

  it('with no server answering at the socket, the run starts a fresh interpreter all the same', () => {
    const r = through(join(tempProject({}), 'nobody.sock'), () => runPython(['-c', 'import sys; print("fractions" in sys.modules)']));
    expect(r).toMatchObject({ ok: true, status: 0, stdout: 'False\n' });
  });
});

describe('a fork server that preloads model files', () => {
  it('hands its runs the files already imported, with the search path a fresh run has, and says which it could not import', async () => {
    const dir = tempProject({
      'pkg/warmpkg/__init__.py': '', 'pkg/warmpkg/model.py': 'print("imported")\nfrom . import helper\n', 'pkg/warmpkg/helper.py': 'VALUE = 7\n',
      'pkg/warmpkg/broken.py': 'raise ImportError("needs a package that is not installed")\n',
    });
    const files = [join(dir, 'pkg/warmpkg/model.py'), join(dir, 'pkg/warmpkg/broken.py')];
    const warm = await startForkServer('torch', files);
    try {
      expect(warm.notes).toEqual([`${files[1]} not preloaded: ImportError: needs a package that is not installed`]);
      const probe = `import sys\nprint('warmpkg.model' in sys.modules, ${JSON.stringify(join(dir, 'pkg'))} in sys.path)`;
      const forked = through(warm.socket, () => runPython(['-c', probe], { python: warm.python }));
      const fresh = through(null, () => runPython(['-c', probe], { python: warm.python }));
      expect(forked.ok && forked.stdout).toBe('True False\n');
      expect(fresh.ok && fresh.stdout).toBe('False False\n');
    } finally {
      await warm.stop();
    }
  });
});
