// Location-level scoring of adopt's listed sites against hand-written labels of real model code.
// A site and a label match when they have the same category and their line ranges overlap.
// Each label carries an anchor (text of its first line): a label whose anchor is not on that
// line is reported as a mismatch, so a mislabel or a shifted file is seen rather than scored.

export const CATEGORIES = ['attention', 'softmax', 'dropout_add_layernorm', 'linear_gelu', 'conv_bn', 'linear_bn', 'qkv_fusion', 'rmsnorm', 'gated_mlp', 'rope', 'lm_head_ce', 'fused_optimizer'] as const;

/** Rule variants that implement one kernel family count as that family. */
const RULE_CATEGORY: Record<string, string> = {
  rmsnorm_variance_fp32: 'rmsnorm', rmsnorm_fp32_scale: 'rmsnorm', gated_mlp_chunk: 'gated_mlp', gated_mlp_act: 'gated_mlp', rope_interleaved: 'rope', rope_single: 'rope', rope_complex: 'rope', rope_pairs: 'rope', conv_bn_act: 'conv_bn', conv1x1_gelu: 'linear_gelu', conv1d_gelu: 'linear_gelu',
};

export function categoryOf(rule: string): string {
  return RULE_CATEGORY[rule] ?? rule;
}

export interface LabelSite { category: string; lines: [number, number]; anchor: string; note?: string }
export interface LabelledFile { key: string; path: string; source: string; sites: LabelSite[] }
export interface ListedSite { rule: string; file: string; lines: [number, number]; decision: string }

/** tp: labels found; fn: labels not found; hits/fp: listed sites on a label / on none. */
export interface Counts { tp: number; fn: number; hits: number; fp: number; precision: number; recall: number }
export interface Mismatch { file: string; line: number; category: string; anchor: string; found: string }

type Tally = { tp: number; fn: number; hits: number; fp: number };
function counts(t: Tally): Counts {
  return { ...t, precision: t.hits + t.fp ? t.hits / (t.hits + t.fp) : 1, recall: t.tp + t.fn ? t.tp / (t.tp + t.fn) : 1 };
}

/** Labels whose anchor text is not on their first line. */
export function anchorMismatches(files: LabelledFile[]): Mismatch[] {
  const out: Mismatch[] = [];
  for (const f of files) {
    const lines = f.source.split('\n');
    for (const s of f.sites) {
      const text = lines[s.lines[0] - 1];
      if (text === undefined || !text.includes(s.anchor)) out.push({ file: f.key, line: s.lines[0], category: s.category, anchor: s.anchor, found: text === undefined ? '(past the end of the file)' : text.trim() });
    }
  }
  return out;
}

/** Kernels that run another family's work inside them: a softmax inside a rewritten attention
 *  site is computed by the fused attention kernel, so the rewritten view counts it as rewritten. */
const RUNS_INSIDE: Record<string, string[]> = { softmax: ['attention'] };

/** The rewritten view's filter: a site rewritten itself, or lying within a rewritten site of a
 *  family whose kernel computes it. */
export function rewrittenOrInside(sites: ListedSite[]): (s: ListedSite) => boolean {
  const rewritten = sites.filter((s) => s.decision === 'rewritten');
  return (s) => s.decision === 'rewritten' || rewritten.some((r) => r.file === s.file
    && (RUNS_INSIDE[categoryOf(s.rule)] ?? []).includes(categoryOf(r.rule)) && r.lines[0] <= s.lines[0] && s.lines[1] <= r.lines[1]);
}

const overlaps = (a: [number, number], b: [number, number]) => a[0] <= b[1] && b[0] <= a[1];

export interface ViewScore { total: Counts; perCategory: Record<string, Counts>; missed: string[]; extra: string[] }

/** Scores the sites `keep` accepts. Sites are deduplicated by category and location first (a
 *  rule may list several candidates at one place); sites in files that are not labelled are
 *  left out (the caller reports them). */
export function scoreView(files: LabelledFile[], sites: ListedSite[], keep: (s: ListedSite) => boolean): ViewScore {
  const byPath = new Map(files.map((f) => [f.path, f]));
  const seen = new Set<string>();
  const listed: { file: LabelledFile; category: string; lines: [number, number] }[] = [];
  for (const s of sites) {
    const file = byPath.get(s.file);
    if (!file || !keep(s)) continue;
    const category = categoryOf(s.rule);
    const key = `${s.file}\0${category}\0${s.lines[0]}\0${s.lines[1]}`;
    if (seen.has(key)) continue;
    seen.add(key);
    listed.push({ file, category, lines: s.lines });
  }
  const tally = new Map<string, Tally>(CATEGORIES.map((c) => [c, { tp: 0, fn: 0, hits: 0, fp: 0 }]));
  const bump = (category: string, k: keyof Tally) => {
    if (!tally.has(category)) tally.set(category, { tp: 0, fn: 0, hits: 0, fp: 0 });
    tally.get(category)![k]++;
  };
  const missed: string[] = [];
  const extra: string[] = [];
  for (const l of listed) {
    const hit = l.file.sites.some((s) => s.category === l.category && overlaps(s.lines, l.lines));
    bump(l.category, hit ? 'hits' : 'fp');
    if (!hit) extra.push(`${l.file.key}:${l.lines[0]}-${l.lines[1]} ${l.category}`);
  }
  for (const f of files) {
    for (const s of f.sites) {
      const found = listed.some((l) => l.file === f && l.category === s.category && overlaps(s.lines, l.lines));
      bump(s.category, found ? 'tp' : 'fn');
      if (!found) missed.push(`${f.key}:${s.lines[0]}-${s.lines[1]} ${s.category}${s.note ? ` (${s.note})` : ''}`);
    }
  }
  const total: Tally = { tp: 0, fn: 0, hits: 0, fp: 0 };
  const perCategory: Record<string, Counts> = {};
  for (const [c, t] of tally) {
    for (const k of Object.keys(total) as (keyof Tally)[]) total[k] += t[k];
    perCategory[c] = counts(t);
  }
  return { total: counts(total), perCategory, missed, extra };
}
