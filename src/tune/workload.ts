// A workload given by hand (`adopt tune --kernel K --shape rows=4096,n=768`), checked against what
// the kernel takes before anything is measured: a size is a positive whole number written in
// digits, a choice one of the values the kernel's code dispatches on, each field once. What a
// model's run reports needs no check: the kernels computed it from real tensors.
import { AdoptError } from '../diag.js';
import type { KernelInfo, Workload } from './space.js';

const SIZE = /^[1-9][0-9]*$/;

/** Parses `--shape` for `kernel`; every problem stops the command with one message naming it. */
export function parseShape(text: string, kernel: string, k: Pick<KernelInfo, 'workload_fields' | 'workload_choices'>): Workload {
  const fields = k.workload_fields.filter((f) => f !== 'dtype');
  const choices = k.workload_choices ?? {};
  const usage = `--shape for ${kernel} takes ${fields.map((f) => `${f}=${choices[f] ? choices[f].join('|') : 'N'}`).join(',')}`;
  const w: Workload = {};
  const parts = text.split(',');
  if (!text.trim()) throw new AdoptError(`${usage}, not an empty shape`);
  for (const part of parts) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(part);
    if (!m) throw new AdoptError(`${usage} (NAME=VALUE pairs separated by commas, no spaces), not '${part}'`);
    const [, name, raw] = m;
    if (name in w) throw new AdoptError(`--shape gives ${name} twice`);
    if (name === 'dtype') { w.dtype = raw; continue; }
    if (!fields.includes(name)) throw new AdoptError(`${usage}; '${name}' is not one of its fields`);
    const allowed = choices[name];
    if (allowed) {
      const value = allowed.find((v) => String(v) === raw);
      if (value === undefined) throw new AdoptError(`--shape ${name} for ${kernel} is one of ${allowed.join(', ')}, not '${raw}'`);
      w[name] = value;
      continue;
    }
    if (!SIZE.test(raw) || !Number.isSafeInteger(Number(raw))) throw new AdoptError(`--shape ${name} is a size: a positive whole number in digits (e.g. ${name}=512), not '${raw}'`);
    w[name] = Number(raw);
  }
  const missing = fields.filter((f) => !(f in w));
  if (missing.length) throw new AdoptError(`${usage}; missing: ${missing.join(', ')}`);
  return w;
}
