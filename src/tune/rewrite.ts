// The tune stage of `adopt rewrite --tune`: the kept rewrites are run once at the model's real size
// to find the workloads their kernels take, each workload is tuned on this target (a workload
// tuned before costs nothing), and each rewritten module gets the lines that load the schedule
// file written beside it.
import type { FileResult } from '../synth/synthesize.js';
import { type DiscoverOptions, type Discovery, type ModelTuneSummary, discoverWorkloads, usesFusedOptimizer } from './model.js';
import { withScheduleLoading } from './schedule-file.js';

export interface TunedRewrite {
  files: FileResult[];
  discovery: Discovery;
  /** Null when no workload was found (nothing ran, no compiled kernel was called, or every call was below its size floor). */
  summary: ModelTuneSummary | null;
}

/** The workloads the rewritten files (those a rewrite changed) run at their real size. */
export function discoverRewrites(files: FileResult[], discover: Omit<DiscoverOptions, 'optimizer'>): Discovery {
  const changed = files.filter((f) => !f.error && f.rewritten !== f.original);
  return discoverWorkloads(changed.map((f) => ({ path: f.path, rewritten: f.rewritten })), {
    ...discover, optimizer: changed.some((f) => usesFusedOptimizer(f.rewritten)),
  });
}

/** `tune` tunes what was found (tuneWorkloads, with the caller's options and messages). */
export async function tuneRewrites(files: FileResult[], discover: Omit<DiscoverOptions, 'optimizer'>, tune: (d: Discovery) => Promise<ModelTuneSummary | null>): Promise<TunedRewrite> {
  const discovery = discoverRewrites(files, discover);
  const summary = await tune(discovery);
  if (!summary) return { files, discovery, summary: null };
  const tuned = new Set(discovery.workloads.flatMap((w) => w.files));
  return { files: files.map((f) => (tuned.has(f.path) ? withScheduleLoading(f) : f)), discovery, summary };
}
