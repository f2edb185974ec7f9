// An offline HTML report (no scripts, no network): inline SVG plots of per-rule precision and
// recall, sites per rule and their decisions, and (for a verified run) verification status per
// model and the distribution of speed ratios; the tool's time per stage; then one row per model
// with its speed, its sites per rule and per site, and a link to its diff.
import { writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import type { SiteResult } from '../synth/synthesize.js';
import { SLOWER_THAN } from '../verify/records.js';

export interface ReportRow {
  model: string;
  status: string;
  reason?: string;
  problems?: string[];
  sites?: number;
  timings?: Record<string, { original_s: number; rewritten_s: number } | undefined>;
  rules?: Record<string, { rewritten: number; skipped: number }>;
  /** The model's diff, relative to the results directory. */
  diff?: string;
  /** The model's source file, whose sites are listed. */
  file?: string;
}

export interface ReportInput {
  title: string;
  summary: Record<string, unknown>;
  rows: ReportRow[];
  sites: SiteResult[];
  perRule?: Record<string, { precision: number; recall: number }>;
  stages?: Record<string, number | undefined>;
  /** Whether the models were verified (and timed); without it there is no status or speed to plot. */
  verified: boolean;
  /** The results directory the rows' diffs are under. */
  out: string;
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

const ratioOf = (t?: { original_s: number; rewritten_s: number }) => (t && t.original_s > 0 ? t.rewritten_s / t.original_s : undefined);

/** Which of the two is slower, by the geometric mean of the forward and training-step ratios, with
 *  the same threshold `rewrite --verify` drops a rule at. */
export function speedVerdict(row: ReportRow): { text: string; cls: string } | undefined {
  const f = ratioOf(row.timings?.eval);
  const t = ratioOf(row.timings?.train);
  if (f === undefined && t === undefined) return undefined;
  const mean = f !== undefined && t !== undefined ? Math.sqrt(f * t) : (f ?? t)!;
  const which = mean > SLOWER_THAN ? ['rewritten slower', 'slower'] : mean < 1 / SLOWER_THAN ? ['original slower', 'faster'] : ['about the same', 'same'];
  const parts = [f !== undefined ? `forward x${f.toFixed(2)}` : '', t !== undefined ? `train x${t.toFixed(2)}` : ''].filter(Boolean).join(', ');
  return { text: `${which[0]} (${parts})`, cls: which[1] };
}

function charts(input: ReportInput): string[] {
  const { sites, rows } = input;
  const rules = [...new Set(sites.map((s) => s.rule))].sort();
  const parts: string[] = [];
  if (input.perRule) parts.push(precisionRecall(input.perRule));
  parts.push(bars('Sites per rule, rewritten', rules.map((r) => [r, sites.filter((s) => s.rule === r && s.decision === 'rewritten').length, '#22bb77'])));
  parts.push(bars('Sites per rule, found and not rewritten', rules.map((r) => [r, sites.filter((s) => s.rule === r && s.decision === 'skipped').length, '#cc8844'])));
  if (input.verified) {
    parts.push(bars('Models by verification status', Object.keys(STATUS_COLORS).filter((s) => s !== 'not_verified').map((s) => [s, rows.filter((r) => r.status === s).length, STATUS_COLORS[s]])));
    const ratios = rows.flatMap((r) => { const x = ratioOf(r.timings?.eval); return x === undefined ? [] : [x]; });
    const buckets: [string, number, string][] = [['< 0.8', 0, '#22bb77'], ['0.8 - 0.95', 0, '#77cc77'], ['0.95 - 1.05', 0, '#999999'], ['1.05 - 1.25', 0, '#c9a227'], ['> 1.25', 0, '#8e44ad']];
    for (const x of ratios) buckets[x < 0.8 ? 0 : x < 0.95 ? 1 : x < 1.05 ? 2 : x < 1.25 ? 3 : 4][1]++;
    parts.push(bars(`Forward time, rewritten / original (${ratios.length} models, eval, tiny configs)`, buckets));
  }
  if (input.stages) parts.push(bars('Tool time per stage (seconds)', Object.entries(input.stages).flatMap(([k, v]) => (k === 'total' || v === undefined || (k === 'verify' && !input.verified) ? [] : [[k, v, '#6677aa'] as [string, number, string]])), { fmt: (v) => v.toFixed(2) }));
  return parts;
}

/** One model's detail: sites per rule, then each site with its decision and reason. */
function detail(row: ReportRow, sites: SiteResult[]): string {
  const own = row.file ? sites.filter((s) => resolve(s.file) === resolve(row.file!)) : [];
  const perRule = Object.entries(row.rules ?? {}).map(([rule, n]) => `<li><code>${esc(rule)}</code>: ${n.rewritten} rewritten, ${n.skipped} left alone</li>`).join('');
  const perSite = own.map((s) => `<li>line ${s.lines[0]}-${s.lines[1]} <code>${esc(s.rule)}</code> in ${esc(s.owner)}${s.method ? `.${esc(s.method)}` : ''}: ${s.decision}${s.reason ? ` (${esc(s.reason.slice(0, 160))})` : ''}</li>`).join('');
  if (!perRule && !perSite) return '';
  return `<details><summary>per rule and per site</summary><ul>${perRule}</ul><ul class="sites">${perSite}</ul></details>`;
}

function modelTable(input: ReportInput, reportDir: string): string {
  const head = `<tr><th>model</th><th>sites rewritten</th><th>status</th>${input.verified ? '<th>speed (rewritten / original)</th>' : ''}<th>reason / problems</th><th>diff</th></tr>`;
  const body = input.rows.filter((r) => r.status !== 'not_rewritten').map((r) => {
    const speed = speedVerdict(r);
    const speedCell = input.verified ? `<td class="speed ${speed?.cls ?? ''}">${speed ? esc(speed.text) : 'not timed'}</td>` : '';
    const diff = r.diff ? `<a href="${esc(relative(reportDir, join(input.out, r.diff)))}">diff</a>` : '';
    return `<tr class="${r.status}"><td>${esc(r.model)}${detail(r, input.sites)}</td><td>${r.sites ?? 0}</td><td>${r.status}</td>${speedCell}<td>${esc((r.reason ?? (r.problems ?? []).join('; ')).slice(0, 200))}</td><td>${diff}</td></tr>`;
  }).join('');
  return `<table>${head}${body}</table>`;
}

export function writeHtmlReport(path: string, input: ReportInput): void {
  const html = `<!doctype html><html><head><meta charset="utf-8"><title>${esc(input.title)}</title>
<style>body{font-family:sans-serif;margin:24px;max-width:1000px}td,th{padding:2px 8px;font-size:13px;text-align:left;vertical-align:top}
figure{margin:16px 0}figcaption{font-weight:bold;margin-bottom:4px}details ul{margin:2px 0;padding-left:16px}
tr.mismatch{background:#fdd}tr.verified{background:#efe}tr.not_runnable{background:#f4f4f4}code{background:#eee}td.slower{color:#a00}td.faster{color:#060}</style></head><body>
<h1>${esc(input.title)}</h1>
<p>${Object.entries(input.summary).map(([k, v]) => `<code>${esc(k)}</code> ${esc(String(v))}`).join(' &middot; ')}</p>
${input.verified ? '' : '<p>Not verified: run with <code>--verify</code> for verification status and speed.</p>'}
${charts(input).join('\n')}
<h2>Models</h2>${modelTable(input, dirname(resolve(path)))}
</body></html>`;
  writeFileSync(path, html);
}
