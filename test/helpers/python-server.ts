// Vitest global setup: one warm Python (native/adopt_harness/forkserver.py) for the whole run.
// Every Python launch of the tests, and of the `adopt` processes they spawn, becomes a fork of it
// with torch already imported: about two CPU seconds saved per launch, and the run itself is
// unchanged (see src/verify/warm.ts). Without it the tests still pass, only slower.
import { warmLaunches } from '../../src/verify/forkserver.js';

export { startForkServer, type ForkServer } from '../../src/verify/forkserver.js';

export default async function setup(): Promise<() => Promise<void>> {
  if (process.env.ADOPT_NO_FORKSERVER) return async () => {};
  const warm = await warmLaunches();
  if ('error' in warm) {
    console.warn(`adopt tests: no warm Python (${warm.error}); every launch starts a fresh interpreter`);
    return async () => {};
  }
  return warm.stop;
}
