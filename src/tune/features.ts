// Features of one (kernel, workload, schedule, target) for the cost model. Named, so that a model
// saved with its feature list reads the same columns later whatever kernels exist then:
// - kernel: one-hot of its name;
// - workload: log2 of every numeric field, log2 of their product, a one-hot of string fields, the dtype;
// - schedule: log2 of numeric parameters, a one-hot of categorical ones (by parameter name, shared
//   across kernels, so what is learnt about `chunk` or `omp_kind` on one kernel carries to another),
//   and log2 of each numeric parameter against the workload's leading size (work items per chunk);
//   and a one-hot of every parameter value per kernel (`k:s.p=v`), so that the model can hold a
//   kernel's own preferences (a sweet spot of a tile size, say) without building them from the
//   shared columns;
// - target: log2 of its cores and its vector-ISA flags.
import type { Target } from './measurer.js';
import type { Schedule, SpaceJson, Value, Workload } from './space.js';

export const TARGET_FLAGS = ['avx', 'avx2', 'fma', 'avx512f', 'avx512bw', 'avx512_bf16', 'amx_tile', 'neon', 'asimd', 'sve'];
export const DTYPES = ['float32', 'bfloat16', 'float16'];
const LEADING = ['rows', 'tokens', 'params', 'seq', 'q_len', 'batch'];

export interface KernelShape {
  space: SpaceJson;
  workload_fields: string[];
  example_workloads?: Workload[];
}

export type Catalog = Record<string, KernelShape>;

function log2p(v: number): number {
  return Math.log2(Math.max(v, 0) + 1);
}

/** The leading size of a workload (rows, tokens, ...): what a `chunk` parameter cuts. */
export function leadingSize(w: Workload): number {
  for (const f of LEADING) if (typeof w[f] === 'number') return w[f] as number;
  const nums = Object.entries(w).filter(([k, v]) => k !== 'dtype' && typeof v === 'number').map(([, v]) => v as number);
  return nums.length ? Math.max(...nums) : 1;
}

function kernelValue(kernel: string, param: string, value: Value): string {
  return `${kernel}:s.${param}=${String(value)}`;
}

/** Feature names for every kernel of a catalog, in a stable order. */
export function featureNames(catalog: Catalog): string[] {
  const names = new Set<string>();
  for (const k of Object.keys(catalog).sort()) {
    const shape = catalog[k];
    names.add(`kernel=${k}`);
    for (const f of shape.workload_fields) {
      if (f === 'dtype') continue;
      const values = (shape.example_workloads ?? []).map((w) => w[f]);
      if (values.some((v) => typeof v === 'string')) for (const v of values) names.add(`w.${f}=${v}`);
      else names.add(`w.${f}`);
    }
    for (const [p, values] of Object.entries(shape.space.params)) {
      for (const v of values) names.add(kernelValue(k, p, v));
      if (values.every((v) => typeof v === 'number')) {
        names.add(`s.${p}`);
        names.add(`s.${p}/lead`);
      } else {
        for (const v of values) names.add(`s.${p}=${v}`);
      }
    }
  }
  return [
    ...[...names].sort(),
    'w.log_elems', ...DTYPES.map((d) => `dtype=${d}`), 't.cores', ...TARGET_FLAGS.map((f) => `t.${f}`), 'bias',
  ];
}

/** The named feature values of one configuration (names not in a model's list are ignored there). */
export function featureMap(kernel: string, workload: Workload, schedule: Schedule, target?: Target): Map<string, number> {
  const m = new Map<string, number>();
  m.set(`kernel=${kernel}`, 1);
  let logElems = 0;
  for (const [f, v] of Object.entries(workload)) {
    if (f === 'dtype') continue;
    if (typeof v === 'number') {
      m.set(`w.${f}`, log2p(v) / 16);
      logElems += log2p(v);
    } else {
      m.set(`w.${f}=${v}`, 1);
    }
  }
  m.set('w.log_elems', logElems / 32);
  m.set(`dtype=${String(workload.dtype ?? 'float32')}`, 1);
  const lead = leadingSize(workload);
  for (const [p, v] of Object.entries(schedule)) {
    m.set(kernelValue(kernel, p, v), 1);
    if (typeof v === 'number') {
      m.set(`s.${p}`, log2p(v) / 16);
      m.set(`s.${p}/lead`, (Math.log2(Math.max(lead, 1)) - Math.log2(Math.max(v, 1))) / 16);
    } else {
      m.set(`s.${p}=${v as Value}`, 1);
    }
  }
  if (target) {
    m.set('t.cores', log2p(Number(target.cores ?? 1)) / 8);
    for (const f of target.flags ?? []) m.set(`t.${f}`, 1);
  }
  m.set('bias', 1);
  return m;
}

export function vectorize(names: string[], m: Map<string, number>): number[] {
  return names.map((n) => m.get(n) ?? 0);
}

export function featurize(names: string[], kernel: string, workload: Workload, schedule: Schedule, target?: Target): number[] {
  return vectorize(names, featureMap(kernel, workload, schedule, target));
}
