// A synthetic kernel for the tuner's tests: a registry with one kernel whose schedule space is
// small enough to enumerate, the target it is tuned for and a workload of it.
import type { Registry } from '../../src/tune/space.js';

export const PARAMS = { block: [1, 2, 4, 8, 16], unroll: [1, 2, 4] };
export const registry: Registry = {
  format: 'adopt-kernel-registry/1',
  kernels: { synth: { name: 'synth', api: [], switch: 'synth', space: { params: PARAMS, default: { block: 1, unroll: 1 }, constraints: [] }, workload_fields: ['rows', 'dtype'], dtypes: ['float32'], example_workloads: [] } },
};
export const TARGET = { key: 'here', device: 'cpu', cores: 2, flags: [] };
export const workload = { rows: 512, dtype: 'float32' };
