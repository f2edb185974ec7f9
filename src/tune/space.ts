// The schedule space of a kernel, read from the kernel registry (`python -m adopt_kernels.registry`):
// parameters with their allowed values, a default, and constraints over parameters and workload
// fields. The semantics are those of the Python `Space` (native/adopt_kernels/registry.py):
// enumerate in product order, sample, mutate, and legalise a schedule taken from another shape.
// Constraints are evaluated by a tiny parser (+ - * / // % and one comparison), never `eval`.
import { readFileSync } from 'node:fs';
import { runPython } from '../verify/python.js';
import { Rng } from './rng.js';

export type Value = number | string;
export type Schedule = Record<string, Value>;
export type Workload = Record<string, Value>;

export interface SpaceJson {
  params: Record<string, Value[]>;
  default: Schedule;
  constraints: string[];
  /** The parameters applied at call time as the OpenMP schedule ({kind, chunk}); one build serves all their values. */
  omp?: { kind?: string; chunk?: string };
  /** Overrides of the default on targets of a vector level (see vectorLevel): 512-bit vectors on AVX-512. */
  target_defaults?: Record<string, Schedule>;
}

/** The widest vectors the compiled kernels use on a CPU with these flags: the rule of
 *  target.vector_level in native/adopt_kernels, which the target's fingerprint flags allow. */
export function vectorLevel(flags: readonly string[] | undefined): string | null {
  if (!flags) return null;
  if (flags.includes('avx512f')) return 'avx512';
  return flags.includes('avx2') ? 'avx2' : null;
}

export interface KernelInfo {
  name: string;
  api: string[];
  switch: string;
  space: SpaceJson;
  /** The Triton kernel's schedule space, where the kernel has one. */
  cuda_space?: SpaceJson;
  workload_fields: string[];
  /** fields that name a variant of the code, not a size, with the values the kernel takes */
  workload_choices?: Record<string, Value[]>;
  dtypes: string[];
  targets?: string[];
  example_workloads: Workload[];
}

export interface Registry {
  format: string;
  kernels: Record<string, KernelInfo>;
}

// ------------------------------------------------------------------ constraints

type Tok = { t: 'num'; v: number } | { t: 'name'; v: string } | { t: 'op'; v: string };

function tokenize(text: string): Tok[] {
  const out: Tok[] = [];
  const re = /\s*(?:(\d+\.\d*|\.\d+|\d+)|([A-Za-z_][A-Za-z0-9_]*)|(\/\/|<=|>=|==|!=|[-+*/%<>()]))/y;
  let pos = 0;
  while (pos < text.length) {
    if (/^\s*$/.test(text.slice(pos))) break;
    re.lastIndex = pos;
    const m = re.exec(text);
    if (!m) throw new Error(`constraint syntax not allowed at '${text.slice(pos).trim()}' in '${text}'`);
    if (m[1] !== undefined) out.push({ t: 'num', v: Number(m[1]) });
    else if (m[2] !== undefined) out.push({ t: 'name', v: m[2] });
    else out.push({ t: 'op', v: m[3] });
    pos = re.lastIndex;
  }
  return out;
}

/** Python's % (the sign of the divisor) and // (floor). */
function pyMod(a: number, b: number): number {
  if (b === 0) throw new RangeError('modulo by zero');
  return ((a % b) + b) % b;
}

class Parser {
  private i = 0;
  constructor(private readonly toks: Tok[], private readonly env: Record<string, Value>, private readonly text: string) {}

  parse(): Value | boolean {
    const v = this.comparison();
    if (this.i !== this.toks.length) throw new Error(`constraint syntax not allowed: trailing tokens in '${this.text}'`);
    return v;
  }

  private peekOp(): string | undefined {
    const t = this.toks[this.i];
    return t && t.t === 'op' ? t.v : undefined;
  }

  private comparison(): Value | boolean {
    const left = this.arith();
    const op = this.peekOp();
    if (op && ['<', '<=', '>', '>=', '==', '!='].includes(op)) {
      this.i++;
      const right = this.arith();
      if (['<', '<=', '>', '>=', '==', '!='].includes(this.peekOp() ?? '')) throw new Error(`chained comparisons are not allowed in '${this.text}'`);
      switch (op) {
        case '<': return left < right;
        case '<=': return left <= right;
        case '>': return left > right;
        case '>=': return left >= right;
        case '==': return left === right;
        default: return left !== right;
      }
    }
    return left;
  }

  private arith(): Value {
    let v = this.term();
    for (let op = this.peekOp(); op === '+' || op === '-'; op = this.peekOp()) {
      this.i++;
      const r = this.num(this.term());
      v = op === '+' ? this.num(v) + r : this.num(v) - r;
    }
    return v;
  }

  private term(): Value {
    let v = this.unary();
    for (let op = this.peekOp(); op === '*' || op === '/' || op === '//' || op === '%'; op = this.peekOp()) {
      this.i++;
      const a = this.num(v);
      const b = this.num(this.unary());
      if ((op === '/' || op === '//') && b === 0) throw new RangeError('division by zero');
      v = op === '*' ? a * b : op === '/' ? a / b : op === '//' ? Math.floor(a / b) : pyMod(a, b);
    }
    return v;
  }

  private unary(): Value {
    if (this.peekOp() === '-') {
      this.i++;
      return -this.num(this.unary());
    }
    return this.atom();
  }

  private atom(): Value {
    const t = this.toks[this.i++];
    if (!t) throw new Error(`constraint ends early: '${this.text}'`);
    if (t.t === 'num') return t.v;
    if (t.t === 'name') {
      if (!(t.v in this.env)) throw new MissingName(t.v);
      return this.env[t.v];
    }
    if (t.v === '(') {
      const v = this.comparison();
      if (this.toks[this.i++]?.v !== ')') throw new Error(`unbalanced parentheses in '${this.text}'`);
      return typeof v === 'boolean' ? (v ? 1 : 0) : v;
    }
    throw new Error(`constraint syntax not allowed at '${t.v}' in '${this.text}'`);
  }

  private num(v: Value | boolean): number {
    if (typeof v === 'number') return v;
    if (typeof v === 'boolean') return v ? 1 : 0;
    throw new TypeError(`arithmetic on a string ('${v}') in '${this.text}'`);
  }
}

export class MissingName extends Error {
  constructor(readonly field: string) {
    super(`constraint names '${field}', which is neither a parameter nor a workload field`);
  }
}

/** True when the constraint holds in `env`; throws on syntax outside the shared subset. */
export function checkConstraint(text: string, env: Record<string, Value>): boolean {
  return !!new Parser(tokenize(text), env, text).parse();
}

// ------------------------------------------------------------------ the space

export class Space {
  readonly names: string[];

  constructor(readonly params: Record<string, Value[]>, readonly defaults: Schedule, readonly constraints: string[] = [],
    readonly omp: { kind?: string; chunk?: string } = {}) {
    this.names = Object.keys(params);
    for (const [k, v] of Object.entries(defaults)) {
      if (!params[k]?.includes(v)) throw new Error(`default ${k}=${v} is not among ${JSON.stringify(params[k])}`);
    }
  }

  /** The space with its default for a target of these CPU flags (the portable default without them). */
  static fromJson(j: SpaceJson, flags?: readonly string[]): Space {
    const level = vectorLevel(flags);
    const overrides = level ? j.target_defaults?.[level] ?? {} : {};
    return new Space(j.params, { ...j.default, ...overrides }, j.constraints ?? [], j.omp ?? {});
  }

  toJson(): SpaceJson {
    return { params: this.params, default: this.defaults, constraints: this.constraints, ...(Object.keys(this.omp).length ? { omp: this.omp } : {}) };
  }

  /** What a schedule needs built: its parameters less the call-time OpenMP ones (schedules with one build key share a compile). */
  buildKey(s: Schedule): string {
    const runtime = new Set(Object.values(this.omp));
    return scheduleKey(Object.fromEntries(Object.entries(s).filter(([k]) => !runtime.has(k))));
  }

  get size(): number {
    return this.names.reduce((n, k) => n * this.params[k].length, 1);
  }

  legal(s: Schedule, workload: Workload = {}): boolean {
    const keys = Object.keys(s);
    if (keys.length !== this.names.length || !keys.every((k) => k in this.params)) return false;
    if (!this.names.every((k) => this.params[k].includes(s[k]))) return false;
    const env = { ...workload, ...s };
    try {
      return this.constraints.every((c) => checkConstraint(c, env));
    } catch (e) {
      if (e instanceof MissingName || e instanceof RangeError) return false;
      throw e;
    }
  }

  /** Every legal schedule, in product order (the last parameter varies fastest). */
  enumerate(workload: Workload = {}): Schedule[] {
    const out: Schedule[] = [];
    const idx = this.names.map(() => 0);
    if (this.names.some((k) => this.params[k].length === 0)) return out;
    for (;;) {
      const s: Schedule = {};
      this.names.forEach((k, i) => { s[k] = this.params[k][idx[i]]; });
      if (this.legal(s, workload)) out.push(s);
      let i = this.names.length - 1;
      while (i >= 0 && ++idx[i] === this.params[this.names[i]].length) idx[i--] = 0;
      if (i < 0) return out;
    }
  }

  sample(rng: Rng, workload: Workload = {}, tries = 200): Schedule {
    for (let t = 0; t < tries; t++) {
      const s: Schedule = {};
      for (const k of this.names) s[k] = rng.choice(this.params[k]);
      if (this.legal(s, workload)) return s;
    }
    return { ...this.defaults };
  }

  mutate(s: Schedule, rng: Rng, workload: Workload = {}, tries = 50): Schedule {
    for (let t = 0; t < tries; t++) {
      const name = rng.choice(this.names);
      const m = { ...s, [name]: rng.choice(this.params[name]) };
      if (!sameSchedule(m, s) && this.legal(m, workload)) return m;
    }
    return { ...s };
  }

  /** The distance legalise minimises: log2 ratio per numeric parameter, 1 per differing choice. */
  distance(candidate: Schedule, want: Schedule): number {
    let d = 0;
    for (const k of this.names) {
      const v = candidate[k];
      const w = k in want ? want[k] : this.defaults[k];
      if (typeof v === 'number' && typeof w === 'number' && v > 0 && w > 0) d += Math.abs(Math.log2(v) - Math.log2(w));
      else if (v !== w) d += 1;
      if (v !== this.defaults[k]) d += 1e-6;
    }
    return d;
  }

  /** The default as dispatch runs it at `workload`: legalised where the workload's constraints forbid it. */
  defaultAt(workload: Workload = {}): Schedule {
    return this.legalise(this.defaults, workload);
  }

  /** The legal schedule at `workload` nearest to `s` (taken from another shape); the default when none is legal. */
  legalise(s: Schedule, workload: Workload = {}): Schedule {
    // a schedule legal here is its own nearest (as in registry.Space.legalise)
    if (this.legal(s, workload)) return { ...s };
    let best: Schedule | null = null;
    let bestD = Infinity;
    for (const c of this.enumerate(workload)) {
      const d = this.distance(c, s);
      if (d < bestD) { best = c; bestD = d; }
    }
    return best ?? { ...this.defaults };
  }
}

export function scheduleKey(s: Schedule): string {
  return JSON.stringify(Object.keys(s).sort().map((k) => [k, s[k]]));
}

export function sameSchedule(a: Schedule, b: Schedule): boolean {
  return scheduleKey(a) === scheduleKey(b);
}

export function workloadKey(w: Workload): string {
  return scheduleKey(w);
}

// ------------------------------------------------------------------ the registry

let cached: Registry | null = null;

/** The kernel registry, read once per process ($ADOPT_REGISTRY_JSON names a file to read instead). */
export function loadRegistry(): Registry {
  if (cached) return cached;
  const file = process.env.ADOPT_REGISTRY_JSON;
  let text: string;
  if (file) {
    text = readFileSync(file, 'utf8');
  } else {
    // the registry prints indented JSON over many lines, so this reads all of stdout, not its last line
    const r = runPython(['-W', 'ignore', '-m', 'adopt_kernels.registry'], { timeoutMs: 300_000 });
    if (!r.ok || r.status !== 0) {
      const why = r.ok ? (r.stderr || '').trim().split('\n').slice(-3).join(' | ') : r.error;
      throw new Error(`cannot read the kernel registry (python -m adopt_kernels.registry): ${why}`);
    }
    text = r.stdout;
  }
  const reg = JSON.parse(text) as Registry;
  if (!reg || typeof reg.kernels !== 'object') throw new Error('malformed kernel registry (no "kernels")');
  cached = reg;
  return reg;
}

/** Replaces the process's registry (tests, replay data with its own spaces). */
export function setRegistry(reg: Registry | null): void {
  cached = reg;
}

export type Device = 'cpu' | 'cuda';

/** The schedule space of `kernel` on `device` (the C++ template's, or the Triton kernel's), with
 *  the default of a CPU with `flags` (the target's fingerprint flags). */
export function kernelSpace(kernel: string, reg: Registry = loadRegistry(), device: Device = 'cpu', flags?: readonly string[]): Space {
  const k = reg.kernels[kernel];
  if (!k) throw new Error(`unknown kernel '${kernel}'; known: ${Object.keys(reg.kernels).sort().join(', ')}`);
  if (device === 'cuda') {
    if (!k.cuda_space) throw new Error(`kernel '${kernel}' has no GPU (Triton) implementation; kernels that do: ${Object.keys(reg.kernels).filter((n) => reg.kernels[n].cuda_space).sort().join(', ') || 'none'}`);
    return Space.fromJson(k.cuda_space);
  }
  return Space.fromJson(k.space, flags);
}
