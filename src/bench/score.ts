// Adopter's scoring on HF-199: per (rule, model) cell, TP = min(g, t), FN = max(g - t, 0),
// FP = max(t - g, 0); micro-averaged precision and recall.
export interface Cell { model: string; rule: string; truth: number; found: number }

export interface Score { tp: number; fp: number; fn: number; precision: number; recall: number }

export function score(cells: Cell[]): Score {
  let tp = 0, fp = 0, fn = 0;
  for (const c of cells) {
    tp += Math.min(c.truth, c.found);
    fn += Math.max(c.truth - c.found, 0);
    fp += Math.max(c.found - c.truth, 0);
  }
  return { tp, fp, fn, precision: tp + fp ? tp / (tp + fp) : 1, recall: tp + fn ? tp / (tp + fn) : 1 };
}

export const BENCH_COLUMNS = ['rule_1', 'rule_2', 'rule_3', 'rule_4', 'rule_5', 'rule_6', 'rule_7', 'rule_8', 'rule_9'];
