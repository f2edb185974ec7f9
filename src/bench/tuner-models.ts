// Where the replay benchmark keeps its pre-trained cost models. The shipped models
// (fixtures/tuning/model/) are those of every kernel of the shipped replay data, and the tuner
// loads them; another replay directory keeps its own beside its data. A run on a subset of the
// kernels (`--kernels`) trains models on less data: they go to the cache, keyed by the replay
// directory and the kernel set, so that no subset run replaces the models of the whole set.
import { createHash } from 'node:crypto';
import { join, resolve } from 'node:path';
import { MODEL_DIR, PRETRAINED_PATH, REPLAY_DIR } from '../tune/pretrain.js';
import { cacheDir } from './corpus.js';

export interface ModelLocation {
  /** The directory of the fold models (`fold-N.json`). */
  dir: string;
  /** The model trained on every workload of the chosen kernels. */
  pretrained: string;
}

/** Where the models of a run over `chosen` of the kernels in `replayDir` (`loaded`) are kept. */
export function modelLocation(replayDir: string, loaded: readonly string[], chosen: readonly string[]): ModelLocation {
  const subset = [...new Set(chosen)].sort();
  const whole = loaded.every((k) => subset.includes(k));
  const shipped = resolve(replayDir) === resolve(REPLAY_DIR);
  if (whole && shipped) return { dir: MODEL_DIR, pretrained: PRETRAINED_PATH };
  if (whole) return at(join(replayDir, 'model'));
  const replayKey = createHash('sha256').update(resolve(replayDir)).digest('hex').slice(0, 12);
  return at(join(cacheDir(), 'tuner-models', replayKey, subset.join('+')));
}

const at = (dir: string): ModelLocation => ({ dir, pretrained: join(dir, 'pretrained.json') });
