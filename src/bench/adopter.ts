// Adopter's rules are narrower than adopt's: its softmax rule matches the functional spelling
// only, its Dropout_LayerNorm rule the nn.Dropout module, its biased-GELU rule the
// `ACT2FN[config.hidden_act]` activation, its fused-QKV rule three projections in one block.
// To score with Adopter's ground truth, each adopt site is classified as inside or outside the
// scope of Adopter's rule; sites outside are real sites Adopter does not look for and are listed
// separately, never dropped silently.
import type { Op } from '../dsl/ir.js';
import type { Site } from '../match/matcher.js';

export const ADOPTER_COLUMNS: Record<string, { column: number; rule: string; scope: string }> = {
  rule_4: { column: 3, rule: 'softmax', scope: 'functional spelling nn.functional.softmax / F.softmax' },
  rule_5: { column: 4, rule: 'dropout_add_layernorm', scope: 'dropout as an nn.Dropout module' },
  rule_6: { column: 5, rule: 'linear_gelu', scope: 'activation ACT2FN[config.hidden_act] or a GELU module' },
  rule_7: { column: 6, rule: 'conv_bn', scope: 'all' },
  rule_8: { column: 7, rule: 'linear_bn', scope: 'all' },
  rule_9: { column: 8, rule: 'qkv_fusion', scope: 'q, k, v projected in the top-level block of forward' },
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
      return d.kind === 'module' && within(s, y) && !within(d, y);
    }
    case 'rule_6': {
      const a = op('a')!;
      return a.kind === 'module' && (a.type ?? []).some((t) => t.endsWith('ACT2FN[config.hidden_act]') || /(^|\.)GELU$/.test(t));
    }
    case 'rule_9':
      // `query = self.q_proj(hidden_states)`: each projection is the whole right-hand side
      return ['q', 'k', 'v'].every((n) => {
        const o = op(n)!;
        if (site.view.depth.get(o.id) !== 0 || !lineText) return false;
        const [before, after] = lineText(o);
        return /^\s*[A-Za-z_]\w*\s*=\s*$/.test(before) && /^\s*(#.*)?$/.test(after);
      });
    default: return true;
  }
}
