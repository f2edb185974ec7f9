// Where the replay benchmark keeps its cost models: the shipped ones only for the whole kernel set.
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { modelLocation } from '../../src/bench/tuner-models.js';
import { MODEL_DIR, PRETRAINED_PATH, REPLAY_DIR } from '../../src/tune/pretrain.js';
import { loadReplayDir } from '../../src/tune/replay.js';

const shippedKernels = loadReplayDir(REPLAY_DIR).map((s) => s.kernel);
const inside = (dir: string, path: string) => resolve(path).startsWith(`${resolve(dir)}/`) || resolve(path) === resolve(dir);

describe('modelLocation', () => {
  it('keeps the shipped models for a run over every shipped kernel, in any order', () => {
    expect(shippedKernels.length).toBeGreaterThan(1);
    expect(modelLocation(REPLAY_DIR, shippedKernels, [...shippedKernels].reverse())).toEqual({ dir: MODEL_DIR, pretrained: PRETRAINED_PATH });
  });

  it('puts a subset run\'s models outside the shipped model directory, keyed by the kernel set', () => {
    const [a, b] = shippedKernels;
    const one = modelLocation(REPLAY_DIR, shippedKernels, [a]);
    const two = modelLocation(REPLAY_DIR, shippedKernels, [b, a]);
    for (const loc of [one, two]) {
      expect(inside(MODEL_DIR, loc.dir)).toBe(false);
      expect(inside(MODEL_DIR, loc.pretrained)).toBe(false);
      expect(inside(loc.dir, loc.pretrained)).toBe(true);
    }
    expect(one.dir).not.toBe(two.dir);
    expect(modelLocation(REPLAY_DIR, shippedKernels, [a, b])).toEqual(two);
  });

  it('keeps another replay directory\'s models beside its data, and its subsets apart from both', () => {
    const other = join('/tmp', 'some-replay');
    expect(modelLocation(other, ['x', 'y'], ['y', 'x']).dir).toBe(join(other, 'model'));
    const sub = modelLocation(other, ['x', 'y'], ['x']);
    expect(inside(join(other, 'model'), sub.dir)).toBe(false);
    expect(sub.dir).not.toBe(modelLocation(REPLAY_DIR, shippedKernels, [shippedKernels[0]]).dir);
  });
});
