// Adopter's rules are narrower than adopt's. As its rule patterns are written (ISSTA'24 artifact,
// main.py RULE4..RULE9): softmax is the functional `softmax($as, dim=-1)` call;
// Dropout_LayerNorm is `Dropout($hs) -> $hs; $hs + $it -> $h; LayerNorm($h)`, the dropout output
// on the left of the add; biased GELU is `Linear($hs) -> $hs; ACT2FN[config.hidden_act]($hs)`;
// fused QKV is three Linear projections of one input, each then passed to `self._split_heads`.
// To score with Adopter's ground truth, each adopt site is classified as inside or outside the
// scope of Adopter's rule; sites outside are real sites Adopter does not look for and are listed
// separately, never dropped silently.
import { readFileSync } from 'node:fs';
import type { Op, Program } from '../dsl/ir.js';
import type { Site } from '../match/matcher.js';
import { usersOf } from '../match/method.js';
import type { GroundTruthRow } from './corpus.js';
import { score, type Cell, type Score } from './score.js';

export const ADOPTER_COLUMNS: Record<string, { column: number; rule: string; scope: string }> = {
  rule_4: { column: 3, rule: 'softmax', scope: 'functional spelling nn.functional.softmax / F.softmax' },
  rule_5: { column: 4, rule: 'dropout_add_layernorm', scope: 'an nn.Dropout module whose output is the left operand of the residual add' },
  rule_6: { column: 5, rule: 'linear_gelu', scope: 'activation ACT2FN[config.hidden_act]' },
  rule_7: { column: 6, rule: 'conv_bn', scope: 'all' },
  rule_8: { column: 7, rule: 'linear_bn', scope: 'all' },
  rule_9: { column: 8, rule: 'qkv_fusion', scope: 'q, k, v projected in the top-level block of forward, each passed to self._split_heads' },
};

const FUNCTIONAL_SOFTMAX = /^(torch\.)?(nn\.)?(functional|F)\.softmax\s*\(/;

function within(a: Op, b: Op): boolean {
  return (a.span.file ?? '') === (b.span.file ?? '') && a.span.start >= b.span.start && a.span.end <= b.span.end;
}

export function inAdopterScope(column: string, site: Site, sourceText: (op: Op) => string, lineText?: (op: Op) => [string, string]): boolean {
  const op = (name: string) => site.ops[name];
  switch (column) {
    case 'rule_4': return FUNCTIONAL_SOFTMAX.test(sourceText(op('y')!));
    case 'rule_5': {
      // BERT's spelling: `h = self.dropout(h)` then `self.LayerNorm(h + input_tensor)`.
      const [d, s, y] = [op('d')!, op('s')!, op('y')!];
      const left = s.args[0];
      return d.kind === 'module' && within(s, y) && !within(d, y) && left?.k === 'ssa' && left.id === d.id;
    }
    case 'rule_6': {
      const a = op('a')!;
      return a.kind === 'module' && (a.type ?? []).some((t) => t.endsWith('ACT2FN[config.hidden_act]'));
    }
    case 'rule_9':
      // `query = self.q_proj(hidden_states)`: each projection is the whole right-hand side
      return ['q', 'k', 'v'].every((n) => {
        const o = op(n)!;
        if (site.view.depth.get(o.id) !== 0 || !lineText) return false;
        const [before, after] = lineText(o);
        const splitHeads = usersOf(site.view, o.id).some((u) => u.callee.endsWith('_split_heads') || (u.via ?? []).some((v) => v.endsWith('._split_heads')));
        return /^\s*[A-Za-z_]\w*\s*=\s*$/.test(before) && /^\s*(#.*)?$/.test(after) && splitHeads;
      });
    default: return true;
  }
}

export interface RuleScore extends Score { adopter_column: string; scope: string; exact_models: number; all_sites: number; outside_adopter_scope: number }

/** Adopter's per-(rule, model) count scoring of the sites found in the HF-199 files; sites outside
 *  the scope of Adopter's rule are listed per rule, not counted. */
export function adopterScores(models: { model: string }[], program: Program, sites: Site[], gt: GroundTruthRow[]) {
  const texts = new Map<string, Buffer>();
  const bytes = (p: string) => { if (!texts.has(p)) texts.set(p, readFileSync(p)); return texts.get(p)!; };
  const cells: Cell[] = [];
  const perRule: Record<string, RuleScore> = {};
  const outside: Record<string, string[]> = {};
  for (const [col, { column, rule, scope }] of Object.entries(ADOPTER_COLUMNS)) {
    const ruleCells: Cell[] = [];
    outside[rule] = [];
    models.forEach((m, i) => {
      const path = program.files[i].path;
      const all = sites.filter((s) => s.rule === rule && s.file === path);
      const text = (op: Op) => bytes(path).subarray(op.span.start, op.span.end).toString();
      const around = (op: Op): [string, string] => {
        const b = bytes(path);
        const ls = b.lastIndexOf(10, op.span.start - 1) + 1;
        let le = b.indexOf(10, op.span.end);
        if (le < 0) le = b.length;
        return [b.subarray(ls, op.span.start).toString(), b.subarray(op.span.end, le).toString()];
      };
      const scoped = all.filter((s) => inAdopterScope(col, s, text, around));
      for (const s of all) if (!scoped.includes(s)) outside[rule].push(`${path}:${s.lines[0]}`);
      ruleCells.push({ model: m.model, rule, truth: gt[i].counts[column], found: scoped.length });
    });
    cells.push(...ruleCells);
    const sc = score(ruleCells);
    perRule[rule] = { adopter_column: col, scope, ...sc, exact_models: ruleCells.filter((c) => c.found === c.truth).length, all_sites: ruleCells.reduce((a, c) => a + c.found, 0) + outside[rule].length, outside_adopter_scope: outside[rule].length };
  }
  return { cells, perRule, outside };
}
