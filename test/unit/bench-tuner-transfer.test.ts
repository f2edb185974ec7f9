// The transfer benchmark refuses what would not be a transfer: the new target's data must come from
// another machine than the pre-training data, and every kernel searched must have been pre-trained on.
import { describe, expect, it } from 'vitest';
import { runTransfer } from '../../src/bench/tuner-transfer.js';
import { REPLAY_DIR } from '../../src/tune/pretrain.js';
import { loadReplayDir } from '../../src/tune/replay.js';

const shipped = loadReplayDir(REPLAY_DIR);

describe('runTransfer', () => {
  it('refuses a new target measured on a machine of the pre-training data', async () => {
    const softmax = shipped.filter((s) => s.kernel === 'softmax');
    await expect(runTransfer(shipped, softmax, { sourceDir: REPLAY_DIR, targetDir: REPLAY_DIR, seeds: 1 })).rejects.toThrow(/softmax .*was measured on a target of/);
  });

  it('refuses a kernel with no pre-training data', async () => {
    const rope = shipped.filter((s) => s.kernel === 'rope').map((s) => ({ ...s, target: { ...s.target, key: 'another-machine' } }));
    const source = shipped.filter((s) => s.kernel !== 'rope');
    await expect(runTransfer(source, rope, { sourceDir: REPLAY_DIR, targetDir: '/elsewhere', seeds: 1 })).rejects.toThrow(/no replay data of rope/);
  });
});
