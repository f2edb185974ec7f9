// `adopt kernels status` tells whether the Python that runs the rewritten code imports the kernels
// (without them the guards take the original code, so a user must be told), and the CLI stops
// quietly when its reader closes the pipe.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { adopt, looksLikeCrash, repoRoot } from './helpers/cli.js';
import { sizeText } from '../src/cli/kernels.js';

describe('adopt kernels status', () => {
  it('says the package is not installed, and how to install it, when only the checkout has it', () => {
    const r = adopt(['kernels', 'status'], { env: { PYTHONPATH: '' } });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/package: +NOT installed for .*python.*: rewritten code runs its original path/);
    expect(r.stdout).toContain(`-m pip install ${repoRoot.replace(/\/$/, '')}/native`);
  });

  it('leaves adopt\'s own checkout out of the probe, and names a Python that is not there', () => {
    const r = adopt(['kernels', 'status', '--json'], { env: { PYTHONPATH: `${repoRoot}native` } });
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout);
    // the checkout itself is left out of the probe: a checkout on PYTHONPATH is what adopt adds
    expect(s.installed.importable).toBe(false);
    const other = adopt(['kernels', 'status', '--json', '--python', '/nonexistent/python3']);
    expect(other.code).toBe(2);
    expect(other.stderr).toMatch(/\/nonexistent\/python3 not found/);
    expect(looksLikeCrash(other.stderr)).toBe(false);
  });

  it('says whether malloc keeps freed CPU memory, and how to make it', () => {
    const off = adopt(['kernels', 'status'], { env: { ADOPT_KEEP_FREED_MEMORY: '0' } });
    expect(off.code, off.stderr).toBe(0);
    expect(off.stdout).toMatch(/malloc: +the system's \(ADOPT_KEEP_FREED_MEMORY=1 keeps freed CPU memory/);
    const on = adopt(['kernels', 'status', '--json'], { env: { ADOPT_KEEP_FREED_MEMORY: '1' } });
    expect(on.code, on.stderr).toBe(0);
    expect(JSON.parse(on.stdout).malloc).toEqual({ kept: true, glibc: true });
  });

  it('says whether idle BLAS and OpenMP threads spin, and the settings that make them sleep', () => {
    const env = { ADOPT_QUIET_BLAS_THREADS: '0', OMP_WAIT_POLICY: '', GOMP_SPINCOUNT: '', OPENBLAS_THREAD_TIMEOUT: '' };
    const off = adopt(['kernels', 'status'], { env });
    expect(off.code, off.stderr).toBe(0);
    expect(off.stdout).toMatch(/OpenMP spins after each parallel loop \(OMP_WAIT_POLICY=passive/);
    const offJson = JSON.parse(adopt(['kernels', 'status', '--json'], { env }).stdout).idle_threads;
    const on = adopt(['kernels', 'status', '--json'], { env: { ...env, ADOPT_QUIET_BLAS_THREADS: '1', OMP_WAIT_POLICY: 'passive' } });
    expect(on.code, on.stderr).toBe(0);
    const onJson = JSON.parse(on.stdout).idle_threads;
    expect(onJson.openmp_idle).toBe('sleep');
    expect(off.stdout).toMatch(/process: .*export .*OMP_WAIT_POLICY=passive/);
    const all = adopt(['kernels', 'status'], { env: { ...env, ADOPT_QUIET_BLAS_THREADS: '1', OMP_WAIT_POLICY: 'passive', ADOPT_KEEP_FREED_MEMORY: '1', ADOPT_BLAS_CORE: '1' } });
    expect(all.stdout).not.toMatch(/process: /);
    if (offJson.openblas?.threading === 'pthreads') {
      expect(off.stdout).toMatch(/process: .*export .*ADOPT_QUIET_BLAS_THREADS=1/);
      // Debian's torch links the pthread OpenBLAS: it spins unless told, and sleeps once quieted
      expect(off.stdout).toMatch(/OpenBLAS \(pthreads, \d+ threads\) spins after each call \(ADOPT_QUIET_BLAS_THREADS=1/);
      expect(onJson.openblas).toMatchObject({ threading: 'pthreads', idle: 'sleep', timeout_env: 4 });
    } else {
      expect(off.stdout).not.toMatch(/OpenBLAS .* spins/);
      expect(onJson.openblas?.idle ?? 'none').not.toBe('spin');
    }
  });

  it('says from which size each kernel runs compiled on the CPU, and what $ADOPT_CPU_MIN_BYTES sets instead', () => {
    const json = adopt(['kernels', 'status', '--json'], { env: { ADOPT_CPU_MIN_BYTES: '' } });
    expect(json.code, json.stderr).toBe(0);
    const s = JSON.parse(json.stdout);
    expect(s.cpu_floor_override).toBeNull();
    const rms = s.kernels.find((k: { kernel: string }) => k.kernel === 'rms_norm');
    // inference above training: under no_grad only the forward's fusion repays a call
    expect(rms.cpu_floor.inference).toBeGreaterThan(rms.cpu_floor.training);
    const text = adopt(['kernels', 'status'], { env: { ADOPT_CPU_MIN_BYTES: '' } });
    expect(text.stdout).toMatch(/floors: +smaller CPU calls run the torch code/);
    const row = text.stdout.split('\n').find((l) => l.trim().startsWith('rms_norm '));
    expect(row).toContain(`compiled from ${sizeText(rms.cpu_floor.inference)} / ${sizeText(rms.cpu_floor.training)}`);
    // a kernel with no floor (the optimizer step wins at every size) says so rather than "from 0"
    const free = s.kernels.find((k: { cpu_floor: { inference: number; training: number } }) => k.cpu_floor.inference === 0 && k.cpu_floor.training === 0);
    expect(free).toBeDefined();
    expect(text.stdout.split('\n').find((l) => l.trim().startsWith(`${free.kernel} `))).toContain('compiled at any size');
    const forced = adopt(['kernels', 'status'], { env: { ADOPT_CPU_MIN_BYTES: '0' } });
    expect(forced.stdout).toMatch(/floors: +\$ADOPT_CPU_MIN_BYTES=0 for every kernel: CPU calls of any size run compiled/);
    expect(forced.stdout.split('\n').find((l) => l.trim().startsWith('rms_norm '))).not.toContain('compiled from');
    // a floor JSON cannot carry as a number still reads
    const never = adopt(['kernels', 'status'], { env: { ADOPT_CPU_MIN_BYTES: 'inf' } });
    expect(never.code, never.stderr).toBe(0);
    expect(never.stdout).toMatch(/floors: +\$ADOPT_CPU_MIN_BYTES=inf for every kernel: no CPU call runs compiled/);
  });

  it('says which kernels OpenBLAS runs, and the core the CPU calls for when they are narrower', () => {
    // the generic kernels a library picks on a CPU it does not know, forced here
    const env = { OPENBLAS_CORETYPE: 'Prescott', ADOPT_BLAS_CORE: '0' };
    const r = adopt(['kernels', 'status', '--json'], { env });
    expect(r.code, r.stderr).toBe(0);
    const b = JSON.parse(r.stdout).blas_core;
    if (b === null) return; // torch without an OpenBLAS that names its kernels (MKL, or a static one)
    expect(b).toMatchObject({ core: 'Prescott', chosen_by: 'OPENBLAS_CORETYPE' });
    const text = adopt(['kernels', 'status'], { env }).stdout;
    if (b.wanted) {
      expect(text).toContain(`blas:     OpenBLAS runs its Prescott kernels ($OPENBLAS_CORETYPE) on a CPU whose instructions call for ${b.wanted}`);
      // the user chose that core: said, not advised against
      expect(text).not.toMatch(/process: .*OPENBLAS_CORETYPE=/);
      // matched by adopt: the CPU's own core, and nothing more to advise about it (the empty
      // OPENBLAS_CORETYPE clears the one set for this test run; adopt reads it as unset)
      const matched = JSON.parse(adopt(['kernels', 'status', '--json'], { env: { OPENBLAS_CORETYPE: '', ADOPT_BLAS_CORE: '1' } }).stdout).blas_core;
      expect(matched.wanted).toBe(null);
      expect(matched.core).not.toBe('Prescott');
    } else {
      expect(text).toContain('blas:     OpenBLAS runs its Prescott kernels ($OPENBLAS_CORETYPE)\n');
    }
  });
});

describe('adopt kernels: a setting that cannot work is named, without a traceback', () => {
  const noTraceback = (stderr: string) => {
    expect(looksLikeCrash(stderr)).toBe(false);
    expect(stderr).not.toMatch(/Traceback|File "|\| /);
  };

  it('a kernel cache that is a file: status and build say the path is not a directory', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'adopt-kcache-')), 'cache');
    writeFileSync(file, '');
    for (const cmd of [['kernels', 'status'], ['kernels', 'build', '--kernels', 'softmax']]) {
      const r = adopt(cmd, { env: { ADOPT_KERNEL_CACHE: file } });
      expect(r.code, cmd.join(' ')).toBe(2);
      expect(r.stderr).toBe(`adopt: the kernel cache $ADOPT_KERNEL_CACHE=${file} is not a directory\n`);
      noTraceback(r.stderr);
    }
    const under = adopt(['kernels', 'status'], { env: { ADOPT_KERNEL_CACHE: join(file, 'sub') } });
    expect(under.code).toBe(2);
    expect(under.stderr).toMatch(/the kernel cache \$ADOPT_KERNEL_CACHE=.*\/cache\/sub cannot be made: Not a directory/);
  });

  it('a Python without torch: status and build say torch is not importable in it', () => {
    const venv = join(mkdtempSync(join(tmpdir(), 'adopt-venv-')), 'v');
    const made = spawnSync(process.env.ADOPT_PYTHON || '/usr/bin/python3', ['-m', 'venv', '--without-pip', venv], { encoding: 'utf8' });
    expect(made.status, made.stderr).toBe(0);
    const python = join(venv, 'bin', 'python');
    for (const cmd of [['kernels', 'status'], ['kernels', 'build']]) {
      const r = adopt(cmd, { env: { ADOPT_PYTHON: python } });
      expect(r.code, cmd.join(' ')).toBe(2);
      expect(r.stderr).toMatch(new RegExp(`^adopt: torch is not importable in ${python.replace(/[.]/g, '\\.')} `));
      noTraceback(r.stderr);
    }
  });

  it('$CXX with arguments is run as a shell splits it; one that cannot run says why', () => {
    const dir = mkdtempSync(join(tmpdir(), 'adopt-cxx-'));
    // a launcher in front of the compiler, as ccache is
    const wrap = join(dir, 'wrap');
    writeFileSync(wrap, '#!/bin/sh\nexec "$@"\n', { mode: 0o755 });
    for (const cxx of ['g++ -O0', `${wrap} g++`]) {
      const r = adopt(['kernels', 'build', '--kernels', 'softmax'], { env: { CXX: cxx, ADOPT_KERNEL_CACHE: join(dir, 'cache') } });
      expect(r.code, `${cxx}: ${r.stderr}`).toBe(0);
      expect(r.stdout).toMatch(/softmax \(float32\): built in/);
    }
    const missing = adopt(['kernels', 'build', '--kernels', 'softmax'], { env: { CXX: 'no-such-cxx -O2', ADOPT_KERNEL_CACHE: join(dir, 'cache') } });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/no C\+\+ compiler: 'no-such-cxx' \(the command of \$CXX='no-such-cxx -O2'\) is not an executable on PATH/);
    const unsplit = adopt(['kernels', 'build', '--kernels', 'softmax'], { env: { CXX: "g++ '-O2", ADOPT_KERNEL_CACHE: join(dir, 'cache') } });
    expect(unsplit.code).toBe(2);
    expect(unsplit.stderr).toMatch(/\$CXX="g\+\+ '-O2" does not split into a command: No closing quotation/);
  });
});

describe('a closed pipe', () => {
  it('ends the CLI quietly with the exit status of the command', () => {
    // a diff far larger than a pipe's buffer, so the write after `head` has gone must fail
    const model = readFileSync(join(repoRoot, 'fixtures/models/llama_style.py'), 'utf8');
    const big = join(mkdtempSync(join(tmpdir(), 'adopt-pipe-')), 'many.py');
    writeFileSync(big, Array.from({ length: 40 }, (_, i) => model.replace(/^class (\w+)/gm, `class $1_${i}`)).join('\n'));
    const r = spawnSync('bash', ['-c', `node bin/adopt.js rewrite ${big} | head -1; exit \${PIPESTATUS[0]}`], { cwd: repoRoot, encoding: 'utf8' });
    expect(r.stdout).toMatch(/^--- a\//);
    expect(r.stderr).not.toMatch(/EPIPE|Unhandled/);
    expect(r.status).toBe(0);
  });
});
