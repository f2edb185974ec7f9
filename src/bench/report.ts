// An offline HTML report (no scripts, no network): inline SVG bars for sites per rule and their
// decisions, verification status per model, and the distribution of forward-time ratios.
import { writeFileSync } from 'node:fs';
import type { SiteResult } from '../synth/synthesize.js';

interface Row { model: string; status: string; reason?: string; problems?: string[]; sites?: number; timings?: Record<string, { original_s: number; rewritten_s: number }> }

const esc = (s: string) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

function bars(title: string, items: [string, number, string][], width = 560): string {
  const max = Math.max(1, ...items.map(([, v]) => v));
  const h = 22;
  const rows = items.map(([label, v, color], i) => `<text x="0" y="${i * h + 15}" font-size="12">${esc(label)}</text><rect x="170" y="${i * h + 4}" width="${((width - 230) * v) / max}" height="14" fill="${color}"/><text x="${175 + ((width - 230) * v) / max}" y="${i * h + 15}" font-size="12">${v}</text>`).join('');
  return `<h2>${esc(title)}</h2><svg width="${width}" height="${items.length * h + 8}" role="img" aria-label="${esc(title)}">${rows}</svg>`;
}

export function writeHtmlReport(path: string, summary: Record<string, unknown>, rows: Row[], sites: SiteResult[]): void {
  const rules = [...new Set(sites.map((s) => s.rule))].sort();
  const ruleBars = bars('Sites per rule (rewritten)', rules.map((r) => [r, sites.filter((s) => s.rule === r && s.decision === 'rewritten').length, '#2b7']));
  const skipBars = bars('Sites per rule (found, not rewritten)', rules.map((r) => [r, sites.filter((s) => s.rule === r && s.decision === 'skipped').length, '#c84']));
  const statuses = ['verified', 'mismatch', 'not_runnable', 'not_rewritten'];
  const colors: Record<string, string> = { verified: '#2b7', mismatch: '#d33', not_runnable: '#999', not_rewritten: '#ccd' };
  const statusBars = bars('Models by verification status', statuses.map((s) => [s, rows.filter((r) => r.status === s).length, colors[s]]));
  const ratios = rows.flatMap((r) => (r.timings?.eval ? [r.timings.eval.rewritten_s / Math.max(1e-9, r.timings.eval.original_s)] : []));
  const buckets: [string, number, string][] = [['< 0.8', 0, '#2b7'], ['0.8 - 0.95', 0, '#7c7'], ['0.95 - 1.05', 0, '#999'], ['1.05 - 1.25', 0, '#c84'], ['> 1.25', 0, '#d33']];
  for (const x of ratios) buckets[x < 0.8 ? 0 : x < 0.95 ? 1 : x < 1.05 ? 2 : x < 1.25 ? 3 : 4][1]++;
  const ratioBars = bars('Forward time, rewritten / original (eval, tiny models, CPU)', buckets);
  const table = rows.filter((r) => r.status !== 'not_rewritten').map((r) => `<tr class="${r.status}"><td>${esc(r.model)}</td><td>${r.sites ?? 0}</td><td>${r.status}</td><td>${esc((r.reason ?? (r.problems ?? []).join('; ')).slice(0, 200))}</td></tr>`).join('');
  const html = `<!doctype html><html><head><meta charset="utf-8"><title>adopt: HF-199 report</title>
<style>body{font-family:sans-serif;margin:24px;max-width:1000px}td,th{padding:2px 8px;font-size:13px;text-align:left}
tr.mismatch{background:#fdd}tr.verified{background:#efe}tr.not_runnable{background:#f4f4f4}code{background:#eee}</style></head><body>
<h1>adopt on HF-199 (transformers 4.35.0)</h1>
<p>${Object.entries(summary).map(([k, v]) => `<code>${esc(k)}</code> ${esc(String(v))}`).join(' &middot; ')}</p>
${ruleBars}${skipBars}${statusBars}${ratioBars}
<h2>Models</h2><table><tr><th>model</th><th>sites rewritten</th><th>status</th><th>reason / problems</th></tr>${table}</table>
</body></html>`;
  writeFileSync(path, html);
}
