// The baselines a tuner must beat: random search, grid search (the space in product order) and an
// AutoTVM-style online model learnt from scratch (its first batch random, then each batch the top
// of boosted trees — AutoTVM's XGBoost — retrained on everything measured so far, with a little
// exploration). AutoTVM measures in batches of 64; the fair variant uses batches of 8, as the
// guided search does.
import { featureNames, featurize } from '../features.js';
import { BoostedTrees } from '../gbt.js';
import type { Schedule } from '../space.js';
import { type Context, type Outcome, type SearchState, type Strategy, type Task, randomPick, searchLoop, timed } from './types.js';

export const randomSearch: Strategy = {
  name: 'random',
  run: (task: Task, ctx: Context): Promise<Outcome> => searchLoop('random', task, ctx, randomPick, ctx.batch ?? 8),
};

export const gridSearch: Strategy = {
  name: 'grid',
  run: (task: Task, ctx: Context): Promise<Outcome> => searchLoop('grid', task, ctx, (s, n) => s.remaining().slice(0, n), ctx.batch ?? 8),
};

/** Goodness labels of a task's trials for a ranking loss: -log2 seconds, failures below the worst. */
export function labels(s: SearchState): { schedules: Schedule[]; y: number[] } {
  const ok = s.trials.filter((t) => t.status === 'ok' && t.median_s !== null);
  const worst = ok.length ? Math.min(...ok.map((t) => -Math.log2(t.median_s as number))) : 0;
  return { schedules: s.trials.map((t) => t.schedule), y: s.trials.map((t) => (t.status === 'ok' && t.median_s !== null ? -Math.log2(t.median_s) : worst - 1)) };
}

/** The n best unmeasured schedules by `score`, each slot random instead with probability epsilon. */
export function pickTop(s: SearchState, n: number, scores: Map<string, number>, epsilon: number, key: (x: Schedule) => string): Schedule[] {
  // keys once per call: a search ranks the whole remaining space every batch
  const rest = s.remaining().map((x) => ({ x, k: key(x) }));
  const ranked = [...rest].sort((a, b) => (scores.get(b.k) ?? -Infinity) - (scores.get(a.k) ?? -Infinity));
  const out: Schedule[] = [];
  const used = new Set<string>();
  let r = 0;
  while (out.length < n && used.size < rest.length) {
    let pick: { x: Schedule; k: string } | undefined;
    if (s.rng.next() < epsilon) {
      const pool = rest.filter((e) => !used.has(e.k));
      pick = pool.length ? s.rng.choice(pool) : undefined;
    } else {
      while (r < ranked.length && used.has(ranked[r].k)) r++;
      pick = ranked[r];
    }
    if (!pick) break;
    used.add(pick.k);
    out.push(pick.x);
  }
  return out;
}

export function autotvm(batch: number): Strategy {
  const name = `autotvm${batch}`;
  return {
    name,
    async run(task: Task, ctx: Context): Promise<Outcome> {
      const names = featureNames({ [task.kernel]: { space: task.space.toJson(), workload_fields: Object.keys(task.workload) } });
      const key = (x: Schedule) => JSON.stringify(x);
      const propose = async (s: SearchState, n: number): Promise<Schedule[]> => {
        const ok = s.trials.filter((t) => t.status === 'ok').length;
        if (ok < 2) return randomPick(s, n);
        const scores = await timed(s.timing, 'model_s', () => {
          const { schedules, y } = labels(s);
          const x = schedules.map((sc) => featurize(names, task.kernel, task.workload, sc, task.target));
          const model = new BoostedTrees().fit(x, y);
          const rest = s.remaining();
          const pred = model.predict(rest.map((sc) => featurize(names, task.kernel, task.workload, sc, task.target)));
          return new Map(rest.map((sc, i) => [key(sc), pred[i]]));
        });
        return pickTop(s, n, scores, ctx.epsilon ?? 0.05, key);
      };
      return searchLoop(name, task, ctx, propose, batch);
    },
  };
}
