// `adopt kernels build | status`: compile the kernels the rewritten code calls, and say for the
// Python in use ($ADOPT_PYTHON) whether they import, which are compiled, and what each picks.
import { AdoptError } from '../diag.js';
import { resolvePython, runPython, runPythonJson } from '../verify/python.js';

interface KernelRow { kernel: string; api: string[]; enabled: boolean; cpu: Record<string, string>; picks: string; cpu_floor?: { inference: number; training: number } }
interface Installed { importable: boolean; file?: string; version?: string; error?: string; python: string; install: string }
interface StatusResult { command: 'status'; installed?: Installed; compiler: string | null; cache: string; cuda: string; disabled: string; cpu_floor_override?: number | string | null; malloc?: { kept: boolean; glibc: boolean }; idle_threads?: IdleThreads; blas_core?: BlasCore | null; target: { key: string; cpu?: string; cores?: number; torch: string }; kernels: KernelRow[] }
interface IdleThreads { openblas: { path: string; threading: string; threads: number; idle: string } | null; openmp_idle: string }
interface BlasCore { path: string; core: string; wanted: string | null; chosen_by: string }
interface BuildResult { command: 'build'; ok: boolean; error?: string; cache?: string; built?: { kernel: string; dtype: string; ok: boolean; seconds?: number; error?: string }[] }

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function call(args: string[]): Record<string, unknown> {
  const r = runPython(['-m', 'adopt_kernels.cli', ...args], { timeoutMs: 600_000 });
  if (!r.ok) throw new AdoptError(r.error);
  const python = pythonName();
  let value: unknown;
  try {
    value = JSON.parse(r.stdout.trim().split('\n').pop() ?? '');
  } catch {
    throw new AdoptError(whyNoAnswer(python, r.stderr || r.stdout, r.status));
  }
  if (!isObject(value) || typeof value.command !== 'string') throw new AdoptError('malformed result from adopt_kernels.cli (expected a JSON object with "command")');
  return value;
}

function pythonName(): string {
  const p = resolvePython();
  return 'path' in p ? p.path : 'Python';
}

/** Why adopt_kernels.cli gave no answer, from its traceback's last line: the exception, which is
 *  what the user can act on (a missing torch most often), not the frames above it. */
function whyNoAnswer(python: string, output: string, status: number | null): string {
  const last = output.trim().split('\n').pop()?.trim() || `exit ${status}, no output`;
  const missing = /^ModuleNotFoundError: No module named '([\w.]+)'/.exec(last);
  if (missing) {
    const top = missing[1].split('.')[0];
    if (top === 'adopt_kernels') return `the kernels package is not found by ${python} (${last})`;
    return `${top} is not importable in ${python} (the kernels need it): install it there, or set ADOPT_PYTHON to a Python that has it`;
  }
  return `the kernels do not import in ${python}: ${last}`;
}

interface ScheduleFileState { path: string; exists: boolean; target: string | null; here: string | null; entries: number; used: number; error?: string }

/** The schedule file the whole process loads ($ADOPT_SCHEDULES), as the kernels will read it. */
function scheduleFileState(): ScheduleFileState | null {
  const path = process.env.ADOPT_SCHEDULES;
  if (!path) return null;
  const r = runPythonJson('adopt_kernels.schedules', [path], 300_000);
  if (!r.ok || !isObject(r.value) || typeof r.value.path !== 'string') return { path, exists: true, target: null, here: null, entries: 0, used: 0, error: r.ok ? 'no description' : r.error };
  return r.value as unknown as ScheduleFileState;
}

/** One line: which schedules the kernels run. */
export function scheduleLine(f: ScheduleFileState | null): string {
  if (!f) return 'schedules: the defaults ($ADOPT_SCHEDULES unset; a module rewritten with --tune loads the adopt-schedules.json beside it)';
  if (!f.exists) return `schedules: $ADOPT_SCHEDULES=${f.path} does not exist: the defaults are used`;
  if (f.error) return `schedules: $ADOPT_SCHEDULES=${f.path}: ${f.error}: the defaults are used`;
  const whose = f.target === null ? 'names no target' : f.target === f.here ? `tuned for this target (${f.target})` : `tuned for target ${f.target}, not this one (${f.here ?? 'no such device here'}): none used`;
  return `schedules: $ADOPT_SCHEDULES=${f.path}, ${whose}; ${f.used} of ${f.entries} entr${f.entries === 1 ? 'y' : 'ies'} used here`;
}

function printStatus(s: StatusResult): void {
  const out = process.stdout;
  out.write(`compiler: ${s.compiler ?? 'none (kernels run their reference path)'}\n`);
  out.write(`target:   ${s.target.cpu ?? 'cpu'}, ${s.target.cores ?? '?'} cores, torch ${s.target.torch} (fingerprint ${s.target.key})\n`);
  out.write(`cuda:     ${s.cuda}\n`);
  out.write(`cache:    ${s.cache}\n`);
  if (s.disabled) out.write(`disabled: ${s.disabled} ($ADOPT_DISABLE)\n`);
  out.write(`${scheduleLine(scheduleFileState())}\n`);
  if (s.malloc?.kept) out.write('malloc:   keeps freed CPU memory for reuse ($ADOPT_KEEP_FREED_MEMORY)\n');
  else if (s.malloc?.glibc) out.write("malloc:   the system's (ADOPT_KEEP_FREED_MEMORY=1 keeps freed CPU memory for reuse: no page faults for large tensors made again; see docs/kernels.md)\n");
  if (s.idle_threads) printIdleThreads(s.idle_threads);
  if (s.blas_core) printBlasCore(s.blas_core);
  const settings = processSettings(s);
  if (settings.length) out.write(`process:  for the whole process, original code too (docs/kernels.md): export ${settings.join(' ')}\n`);
  const i = s.installed;
  if (i?.importable) out.write(`package:  adopt_kernels ${i.version} installed (${i.file}): rewritten code uses it\n`);
  else if (i) {
    out.write(`package:  NOT installed for ${i.python} (${i.error}): rewritten code runs its original path there\n`);
    out.write(`          install it with: ${i.python} -m pip install ${i.install}\n`);
  }
  const forced = s.cpu_floor_override;
  if (typeof forced === 'string') {
    out.write(`floors:   $ADOPT_CPU_MIN_BYTES=${forced} for every kernel: no CPU call runs compiled\n`);
  } else if (forced !== undefined && forced !== null) {
    out.write(`floors:   $ADOPT_CPU_MIN_BYTES=${forced} for every kernel: CPU calls ${forced > 0 ? `from ${sizeText(forced)}` : 'of any size'} run compiled\n`);
  } else {
    out.write('floors:   smaller CPU calls run the torch code, where a compiled call costs more than it saves (inference / with autograd; $ADOPT_CPU_MIN_BYTES overrides)\n');
  }
  for (const k of s.kernels) {
    const builds = Object.entries(k.cpu).map(([d, st]) => `${d} ${st}`).join(', ');
    const floor = k.cpu_floor && (forced === undefined || forced === null) ? `   ${floorText(k.cpu_floor)}` : '';
    out.write(`  ${k.kernel.padEnd(20)} ${(k.enabled ? k.picks : 'switched off').padEnd(16)} ${builds}${floor}   (${k.api.join(', ')})\n`);
  }
}

/** A kernel's CPU floors (inference / with autograd) as the status line says them. */
function floorText(f: { inference: number; training: number }): string {
  if (f.inference <= 0 && f.training <= 0) return 'compiled at any size';
  const one = (b: number) => (b <= 0 ? '0 B' : sizeText(b));
  return `compiled from ${one(f.inference)} / ${one(f.training)}`;
}

/** Bytes in the largest binary unit they reach (1.5 MiB, 64 KiB); 0, a floor that lets every call through, as any size. */
export function sizeText(bytes: number): string {
  if (bytes <= 0) return 'any size';
  for (const [unit, size] of [['GiB', 2 ** 30], ['MiB', 2 ** 20], ['KiB', 2 ** 10]] as const) {
    if (bytes >= size) return `${Number((bytes / size).toFixed(2))} ${unit}`;
  }
  return `${bytes} B`;
}

// Spinning idle threads share the cores with the next stage's workers (docs/kernels.md): say
// which pools spin here, and the setting that makes each sleep.
function printIdleThreads(t: IdleThreads): void {
  const out = process.stdout;
  const b = t.openblas;
  if (b?.idle === 'sleep') out.write(`threads:  OpenBLAS (${b.threading}, ${b.threads} threads) sleeps when idle ($ADOPT_QUIET_BLAS_THREADS or OPENBLAS_THREAD_TIMEOUT)\n`);
  else if (b?.idle === 'spin') out.write(`threads:  OpenBLAS (${b.threading}, ${b.threads} threads) spins after each call (ADOPT_QUIET_BLAS_THREADS=1 makes it sleep: the kernels that follow a product get their cores)\n`);
  const lead = b?.idle === 'sleep' || b?.idle === 'spin' ? '          ' : 'threads:  ';
  if (t.openmp_idle === 'sleep') out.write(`${lead}OpenMP sleeps when idle (OMP_WAIT_POLICY / GOMP_SPINCOUNT)\n`);
  else out.write(`${lead}OpenMP spins after each parallel loop (OMP_WAIT_POLICY=passive, set before the process starts, makes it sleep)\n`);
}

// An OpenBLAS that mistook the CPU runs generic kernels, several times slower at every product
// (docs/kernels.md): say which it runs, and the core the CPU's instructions call for.
function printBlasCore(b: BlasCore): void {
  const by = b.chosen_by === 'library' ? 'its own pick' : b.chosen_by === 'adopt' ? '$ADOPT_BLAS_CORE' : '$OPENBLAS_CORETYPE';
  if (b.wanted) process.stdout.write(`blas:     OpenBLAS runs its ${b.core} kernels (${by}) on a CPU whose instructions call for ${b.wanted}: its products run slower than this CPU allows (4-5x with the generic ones on AVX-512)\n`);
  else process.stdout.write(`blas:     OpenBLAS runs its ${b.core} kernels (${by})\n`);
}

// The process-wide settings not yet in effect here, as the line a user would export before
// starting Python: each speeds up the original code as much as the kernels, so adopt only advises.
function processSettings(s: StatusResult): string[] {
  const out: string[] = [];
  if (s.malloc?.glibc && !s.malloc.kept) out.push('ADOPT_KEEP_FREED_MEMORY=1');
  if (s.idle_threads?.openblas?.idle === 'spin') out.push('ADOPT_QUIET_BLAS_THREADS=1');
  if (s.idle_threads && s.idle_threads.openmp_idle !== 'sleep') out.push('OMP_WAIT_POLICY=passive');
  // a core the user set in OPENBLAS_CORETYPE is theirs to change: the blas line says what it costs
  if (s.blas_core?.wanted && s.blas_core.chosen_by === 'library') out.push(`OPENBLAS_CORETYPE=${s.blas_core.wanted}`);
  return out;
}

export function kernelsCommand(cmd: 'build' | 'status', opts: { target?: string; kernels?: string; json?: boolean; python?: string }): number {
  // the Python the rewritten code will run under, when it is not the one adopt uses itself
  if (opts.python) process.env.ADOPT_PYTHON = opts.python;
  if (cmd === 'status') {
    const s = call(['status']) as unknown as StatusResult & { error?: string };
    if (typeof s.error === 'string') throw new AdoptError(s.error);
    if (!Array.isArray(s.kernels)) throw new AdoptError('malformed status from adopt_kernels.cli (no kernels list)');
    if (opts.json) process.stdout.write(`${JSON.stringify({ ...s, schedules: scheduleFileState() }, null, 1)}\n`);
    else printStatus(s);
    return 0;
  }
  const target = opts.target ?? 'cpu';
  if (target !== 'cpu' && target !== 'cuda') throw new AdoptError(`--target must be cpu or cuda, not '${target}'`);
  const args = ['build', '--target', target];
  if (opts.kernels) args.push('--kernels', opts.kernels);
  const b = call(args) as unknown as BuildResult;
  if (opts.json) process.stdout.write(`${JSON.stringify(b, null, 1)}\n`);
  if (b.error) throw new AdoptError(b.error);
  for (const r of b.built ?? []) {
    if (!opts.json) process.stdout.write(r.ok ? `  ${r.kernel} (${r.dtype}): built in ${r.seconds}s\n` : `  ${r.kernel} (${r.dtype}): FAILED\n${r.error}\n`);
  }
  if (!b.ok) throw new AdoptError('some kernels failed to build (above); their reference path runs instead');
  if (!opts.json) process.stdout.write(`kernels ready in ${b.cache}\n`);
  return 0;
}
