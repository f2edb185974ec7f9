// The transfer benchmark refuses what would not be a transfer: the new target's data must come from
// another machine than the pre-training data, and every kernel searched must have been pre-trained on.
import { describe, expect, it } from 'vitest';
import { join, resolve } from 'node:path';
import { runTransfer, transferModelLocations } from '../../src/bench/tuner-transfer.js';
import { REPLAY_DIR } from '../../src/tune/pretrain.js';
import { loadReplayDir } from '../../src/tune/replay.js';

const shipped = loadReplayDir(REPLAY_DIR);

describe('runTransfer', () => {
  it('refuses a new target measured on a machine of the pre-training data', async () => {
    const softmax = shipped.filter((s) => s.kernel === 'softmax');
    await expect(runTransfer(shipped, softmax, { sourceDir: REPLAY_DIR, targetDir: REPLAY_DIR, sourceKernels: [], targetKernels: [], seeds: 1 })).rejects.toThrow(/softmax .*was measured on a target of/);
  });

  it('refuses a new target that supplied another kernel of the pre-training data', async () => {
    // bias_gelu's shipped data comes from a machine the other kernels were not measured on
    const gelu = shipped.find((s) => s.kernel === 'bias_gelu')!;
    const rope = shipped.filter((s) => s.kernel === 'rope').map((s) => ({ ...s, target: gelu.target }));
    const source = shipped.filter((s) => s.kernel !== 'rope').concat(shipped.filter((s) => s.kernel === 'rope'));
    await expect(runTransfer(source, rope, { sourceDir: REPLAY_DIR, targetDir: '/elsewhere', sourceKernels: [], targetKernels: [], seeds: 1 })).rejects.toThrow(/rope .*was measured on a target of/);
  });

  it('refuses a kernel with no pre-training data', async () => {
    const rope = shipped.filter((s) => s.kernel === 'rope').map((s) => ({ ...s, target: { ...s.target, key: 'another-machine' } }));
    const source = shipped.filter((s) => s.kernel !== 'rope');
    await expect(runTransfer(source, rope, { sourceDir: REPLAY_DIR, targetDir: '/elsewhere', sourceKernels: [], targetKernels: [], seeds: 1 })).rejects.toThrow(/no replay data of rope/);
  });
});

describe('transferModelLocations', () => {
  const opts = { sourceDir: REPLAY_DIR, targetDir: '/data/xeon', sourceKernels: ['rope', 'softmax'], targetKernels: ['rope', 'softmax'], seeds: 1 };

  it('keeps the models of a run over every kernel beside their data', () => {
    const l = transferModelLocations(opts, ['rope', 'softmax']);
    expect(l.source.pretrained).toBe(join(REPLAY_DIR, '..', 'model', 'pretrained.json'));
    expect(l.own.dir).toBe(join('/data/xeon', 'model'));
  });

  it('keeps the models of a run over some kernels in the cache, never over the shipped ones', () => {
    const l = transferModelLocations(opts, ['rope']);
    expect(l.source.pretrained.startsWith(resolve(REPLAY_DIR, '..'))).toBe(false);
    expect(l.own.dir.startsWith('/data/xeon')).toBe(false);
  });
});
