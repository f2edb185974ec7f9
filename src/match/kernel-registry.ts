// The kernel registry as the TypeScript side sees it: `native/adopt_kernels/registry.json`,
// exported from the Python registry (`python -m adopt_kernels.cli registry`; a test keeps the two
// equal). Rules are checked against it: the kernels they name, the switches their guards read,
// and the `_adopt.` functions their templates call must exist.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export interface RegistryKernel {
  name: string;
  api: string[];
  /** Each function's parameters, in order. */
  signature?: Record<string, string[]>;
  switch: string;
  targets?: string[];
  space: { params: Record<string, (number | string)[]>; default: Record<string, number | string>; constraints: string[] };
  workload_fields: string[];
  dtypes: string[];
}

export interface KernelRegistry {
  format: string;
  switches: string[];
  public: string[];
  /** the public names that are a kernel or a formulation: what a rule's kernel line may name */
  kernel_functions: string[];
  kernels: Record<string, RegistryKernel>;
}

export const REGISTRY_PATH = fileURLToPath(new URL('../../native/adopt_kernels/registry.json', import.meta.url));

let cached: KernelRegistry | undefined;

export function kernelRegistry(): KernelRegistry {
  if (cached) return cached;
  const data = JSON.parse(readFileSync(REGISTRY_PATH, 'utf8')) as unknown;
  const ok = typeof data === 'object' && data !== null && (data as KernelRegistry).format === 'adopt-kernel-registry/1'
    && Array.isArray((data as KernelRegistry).switches) && Array.isArray((data as KernelRegistry).public)
    && Array.isArray((data as KernelRegistry).kernel_functions);
  if (!ok) throw new Error(`${REGISTRY_PATH}: not an adopt kernel registry (regenerate it: python -m adopt_kernels.cli registry > native/adopt_kernels/registry.json)`);
  cached = data as KernelRegistry;
  return cached;
}

/** The compiled kernel serving a rule's kernel callee (`adopt_kernels.linear_gelu`: bias_gelu), if any. */
export function compiledKernelOf(callee: string): string | undefined {
  const fn = callee.split('.').pop()!;
  return Object.values(kernelRegistry().kernels).find((k) => k.api.includes(fn))?.name;
}

/** Every public kernel function's parameters, in order. */
export function kernelSignatures(): Record<string, string[]> {
  return Object.assign({}, ...Object.values(kernelRegistry().kernels).map((k) => k.signature ?? {}));
}

export interface RegistryProblem { message: string }

/** What a rule's kernel lines, guards and rewrite templates name that the registry lacks. */
export function registryProblems(kernelCallees: { library: string; callee: string }[], templates: string[]): string[] {
  const reg = kernelRegistry();
  const names = new Set(reg.public);
  const switches = new Set(reg.switches);
  const kernels = new Set(reg.kernel_functions);
  const out: string[] = [];
  for (const k of kernelCallees) {
    if (k.library !== 'native') continue;
    const m = /^adopt_kernels\.([A-Za-z_][A-Za-z0-9_]*)$/.exec(k.callee);
    if (!m || !kernels.has(m[1])) {
      const helper = m && names.has(m[1]) ? ` (${m[1]} is one of its helpers, not a kernel)` : '';
      out.push(`kernel "${k.callee}" is not a kernel of adopt_kernels${helper} (known: ${[...kernels].join(', ')})`);
    }
  }
  for (const t of templates) {
    for (const m of t.matchAll(/_adopt\.enabled\(\s*['"]([^'"]+)['"]\s*\)/g)) {
      if (!switches.has(m[1])) out.push(`guard switch '${m[1]}' is not a kernel switch (known: ${[...switches].join(', ')})`);
    }
    for (const m of t.matchAll(/_adopt\.([A-Za-z_][A-Za-z0-9_]*)/g)) {
      if (!names.has(m[1])) out.push(`'_adopt.${m[1]}' is not a function of adopt_kernels`);
    }
  }
  return [...new Set(out)];
}
