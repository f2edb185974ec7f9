// Offline pre-training of the cost model on records shipped in the repo (fixtures/tuning/), and
// the records-to-training-groups conversion the online fine-tuning and the benchmark share. The
// weights are saved as JSON with the hash of the data they were trained on, so a run reuses them
// instead of training again unless the data changed.
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { CostModel, type Group } from './cost-model.js';
import { type Catalog, featureNames, featurize } from './features.js';
import type { Target } from './measurer.js';
import type { TuneRecord } from './records.js';
import type { ReplaySpace } from './replay.js';
import { type Registry, workloadKey } from './space.js';

export const TUNING_DIR = fileURLToPath(new URL('../../fixtures/tuning', import.meta.url));
export const REPLAY_DIR = `${TUNING_DIR}/replay`;
export const MODEL_DIR = `${TUNING_DIR}/model`;
export const PRETRAINED_PATH = `${MODEL_DIR}/pretrained.json`;

/** Kernels and their spaces, for the feature list: the registry's and those of replay data. */
export function catalogOf(spaces: ReplaySpace[], reg?: Registry | null): Catalog {
  const cat: Catalog = {};
  for (const [name, k] of Object.entries(reg?.kernels ?? {})) cat[name] = { space: k.space, workload_fields: k.workload_fields, example_workloads: k.example_workloads };
  for (const s of spaces) {
    if (!cat[s.kernel]) cat[s.kernel] = { space: s.space.toJson(), workload_fields: Object.keys(s.workloads[0]?.workload ?? {}), example_workloads: s.workloads.map((w) => w.workload) };
  }
  return cat;
}

/** Ranking groups, one per (kernel, workload, target): goodness -log2 seconds, failures below the worst. */
export function groupsOf(names: string[], records: TuneRecord[], targets: Map<string, Target>): Group[] {
  const by = new Map<string, TuneRecord[]>();
  for (const r of records) {
    const k = `${r.target}|${r.kernel}|${workloadKey(r.workload)}`;
    by.set(k, [...(by.get(k) ?? []), r]);
  }
  const groups: Group[] = [];
  for (const rs of by.values()) {
    const ok = rs.filter((r) => r.status === 'ok' && r.median_s !== null && r.median_s > 0);
    if (ok.length < 2) continue;
    const worst = Math.min(...ok.map((r) => -Math.log2(r.median_s as number)));
    const target = targets.get(rs[0].target);
    groups.push({
      x: rs.map((r) => featurize(names, r.kernel, r.workload, r.schedule, target)),
      y: rs.map((r) => (r.status === 'ok' && r.median_s !== null && r.median_s > 0 ? -Math.log2(r.median_s) : worst - 1)),
    });
  }
  return groups;
}

export function dataHash(records: TuneRecord[], extra = ''): string {
  const h = createHash('sha256');
  h.update(extra);
  for (const r of records) h.update(`${r.target}|${r.kernel}|${workloadKey(r.workload)}|${JSON.stringify(r.schedule)}|${r.status}|${r.median_s}\n`);
  return h.digest('hex').slice(0, 16);
}

export interface PretrainOptions {
  steps?: number;
  seed?: number;
  hidden?: number[];
  /** A saved model to reuse when it was trained on the same data (its meta.data_hash). */
  cachePath?: string;
}

export const PRETRAIN_STEPS = 150;
/** Schedules of a group per pre-training step (a sample, drawn afresh each step). */
export const PRETRAIN_ROWS = 48;

/** A model trained on `records`; loaded from `cachePath` instead when that was trained on the same data. */
export async function pretrain(catalog: Catalog, records: TuneRecord[], targets: Map<string, Target>, opts: PretrainOptions = {}): Promise<{ model: CostModel; cached: boolean; seconds: number }> {
  const t0 = performance.now();
  const names = featureNames(catalog);
  const hash = dataHash(records, `${names.join(',')}|${opts.steps ?? PRETRAIN_STEPS}|${(opts.hidden ?? [64, 32]).join('x')}|${opts.seed ?? 0}|${PRETRAIN_ROWS}`);
  if (opts.cachePath) {
    try {
      const m = await CostModel.load(opts.cachePath);
      if (m && m.meta.data_hash === hash) return { model: m, cached: true, seconds: (performance.now() - t0) / 1000 };
      m?.dispose();
    } catch { /* an unreadable cache is trained again */ }
  }
  const model = await CostModel.create(names, opts.hidden ?? [64, 32], opts.seed ?? 0);
  const groups = groupsOf(names, records, targets);
  const loss = model.train(groups, { steps: opts.steps ?? PRETRAIN_STEPS, lr: 3e-3, groupsPerStep: 8, rowsPerGroup: PRETRAIN_ROWS, seed: opts.seed ?? 0 });
  model.meta = { data_hash: hash, records: records.length, groups: groups.length, loss, trained_at: new Date().toISOString() };
  if (opts.cachePath) model.save(opts.cachePath);
  return { model, cached: false, seconds: (performance.now() - t0) / 1000 };
}

/** Steps of target adaptation: enough for this target's records to reorder what the other targets taught. */
export const ADAPT_STEPS = 60;

/**
 * A copy of `model` fine-tuned on this target's own records (the workloads of the kernel tuned
 * before): a model pre-trained on other machines ranks a new machine's schedules poorly
 * (bench:tuner --transfer), and the records of the target's first tuned workloads are what fixes
 * that. The copy is the caller's to dispose; `model` is left as it was.
 */
export async function adaptToTarget(model: CostModel, records: TuneRecord[], targets: Map<string, Target>, opts: { steps?: number; seed?: number } = {}): Promise<{ model: CostModel; groups: number }> {
  const copy = await model.clone();
  const groups = groupsOf(copy.features, records, targets);
  if (groups.length) copy.train(groups, { steps: opts.steps ?? ADAPT_STEPS, lr: 3e-3, groupsPerStep: 8, rowsPerGroup: PRETRAIN_ROWS, seed: opts.seed ?? 0 });
  return { model: copy, groups: groups.length };
}
