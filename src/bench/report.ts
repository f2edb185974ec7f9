// An offline HTML report (no scripts, no network): inline SVG plots of per-rule precision and
// recall, sites per rule and their decisions, verification status per model, the distribution of
// speed ratios and the tool's time per stage, then one row per model.
import { writeFileSync } from 'node:fs';
import type { SiteResult } from '../synth/synthesize.js';

export interface ReportRow { model: string; status: string; reason?: string; problems?: string[]; sites?: number; timings?: Record<string, { original_s: number; rewritten_s: number }> }

export interface ReportInput {
  title: string;
  summary: Record<string, unknown>;
  rows: ReportRow[];
  sites: SiteResult[];
  perRule?: Record<string, { precision: number; recall: number }>;
  stages?: Record<string, number>;
}

export const STATUS_COLORS: Record<string, string> = { verified: '#22bb77', mismatch: '#dd3333', not_runnable: '#999999', not_verified: '#ddccaa', not_rewritten: '#ccccdd' };

const esc = (s: string) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

function bars(title: string, items: [string, number, string][], opts: { width?: number; max?: number; fmt?: (v: number) => string } = {}): string {
  const width = opts.width ?? 640;
  const max = opts.max ?? Math.max(1e-9, ...items.map(([, v]) => v));
  const fmt = opts.fmt ?? ((v: number) => String(v));
  const h = 22;
  const scale = (v: number) => ((width - 300) * v) / max;
  const rows = items.map(([label, v, color], i) => `<text x="0" y="${i * h + 15}" font-size="12">${esc(label)}</text><rect x="230" y="${i * h + 4}" width="${scale(v).toFixed(1)}" height="14" fill="${color}"/><text x="${(235 + scale(v)).toFixed(1)}" y="${i * h + 15}" font-size="12">${esc(fmt(v))}</text>`).join('');
  return `<figure><figcaption>${esc(title)}</figcaption><svg width="${width}" height="${items.length * h + 8}" role="img" aria-label="${esc(title)}">${rows}</svg></figure>`;
}

/** Precision and recall side by side per rule, on a 0-100% axis. */
function precisionRecall(perRule: Record<string, { precision: number; recall: number }>): string {
  const items: [string, number, string][] = [];
  for (const [rule, s] of Object.entries(perRule)) {
    items.push([`${rule} precision`, s.precision * 100, '#3366cc'], [`${rule} recall`, s.recall * 100, '#ff9933']);
  }
  return bars('Precision and recall per rule (Adopter scoring, %)', items, { max: 100, fmt: (v) => `${v.toFixed(1)}%` });
}

export function writeHtmlReport(path: string, input: ReportInput): void {
  const { sites, rows, summary } = input;
  const rules = [...new Set(sites.map((s) => s.rule))].sort();
  const parts: string[] = [];
  if (input.perRule) parts.push(precisionRecall(input.perRule));
  parts.push(bars('Sites per rule, rewritten', rules.map((r) => [r, sites.filter((s) => s.rule === r && s.decision === 'rewritten').length, '#22bb77'])));
  parts.push(bars('Sites per rule, found and not rewritten', rules.map((r) => [r, sites.filter((s) => s.rule === r && s.decision === 'skipped').length, '#cc8844'])));
  parts.push(bars('Models by verification status', Object.keys(STATUS_COLORS).map((s) => [s, rows.filter((r) => r.status === s).length, STATUS_COLORS[s]])));
  const ratios = rows.flatMap((r) => (r.timings?.eval ? [r.timings.eval.rewritten_s / Math.max(1e-9, r.timings.eval.original_s)] : []));
  const buckets: [string, number, string][] = [['< 0.8', 0, '#22bb77'], ['0.8 - 0.95', 0, '#77cc77'], ['0.95 - 1.05', 0, '#999999'], ['1.05 - 1.25', 0, '#c9a227'], ['> 1.25', 0, '#8e44ad']];
  for (const x of ratios) buckets[x < 0.8 ? 0 : x < 0.95 ? 1 : x < 1.05 ? 2 : x < 1.25 ? 3 : 4][1]++;
  parts.push(bars(`Forward time, rewritten / original (${ratios.length} models, eval, tiny configs)`, buckets));
  if (input.stages) parts.push(bars('Tool time per stage (seconds)', Object.entries(input.stages).filter(([k]) => k !== 'total').map(([k, v]) => [k, v, '#6677aa']), { fmt: (v) => v.toFixed(2) }));
  const table = rows.filter((r) => r.status !== 'not_rewritten').map((r) => `<tr class="${r.status}"><td>${esc(r.model)}</td><td>${r.sites ?? 0}</td><td>${r.status}</td><td>${esc((r.reason ?? (r.problems ?? []).join('; ')).slice(0, 200))}</td></tr>`).join('');
  const html = `<!doctype html><html><head><meta charset="utf-8"><title>${esc(input.title)}</title>
<style>body{font-family:sans-serif;margin:24px;max-width:1000px}td,th{padding:2px 8px;font-size:13px;text-align:left}
figure{margin:16px 0}figcaption{font-weight:bold;margin-bottom:4px}
tr.mismatch{background:#fdd}tr.verified{background:#efe}tr.not_runnable{background:#f4f4f4}code{background:#eee}</style></head><body>
<h1>${esc(input.title)}</h1>
<p>${Object.entries(summary).map(([k, v]) => `<code>${esc(k)}</code> ${esc(String(v))}`).join(' &middot; ')}</p>
${parts.join('\n')}
<h2>Models</h2><table><tr><th>model</th><th>sites rewritten</th><th>status</th><th>reason / problems</th></tr>${table}</table>
</body></html>`;
  writeFileSync(path, html);
}
