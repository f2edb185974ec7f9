#!/usr/bin/env node
// Converts line-number labels (`<name>.labels.json` beside a model file, or `labels.json` in a
// package directory) into the inline markers src/bench/labels.ts reads, then deletes the JSON.
// Each file is checked before it is written: reading its markers back must give exactly the
// labels of the JSON. Usage (after `npm run build`): node scripts/labels-to-markers.mjs [DIR]
import { existsSync, readFileSync, readdirSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { formatMarker, readMarkers } from '../dist/bench/labels.js';
import { loadRules } from '../dist/match/rule.js';

const dir = resolve(process.argv[2] ?? 'fixtures/models');
const known = new Set(loadRules().map((r) => r.name));

function jsonFiles() {
  const out = [];
  for (const e of readdirSync(dir).sort()) {
    const p = join(dir, e);
    if (e.endsWith('.labels.json')) out.push({ json: p, base: dir, file: p.replace(/\.labels\.json$/, '.py') });
    else if (statSync(p).isDirectory() && existsSync(join(p, 'labels.json'))) out.push({ json: join(p, 'labels.json'), base: dir });
  }
  return out;
}

/** Every label of a JSON file with its absolute source path. */
function labelsOf({ json, base, file }) {
  const j = JSON.parse(readFileSync(json, 'utf8'));
  const of = (kind, note) => (l) => ({ kind, rule: l.rule, path: l.file ? resolve(base, l.file) : file, lines: l.lines, note: l[note] ?? '' });
  return [...j.sites.map(of('site', 'note')), ...(j.near_misses ?? []).map(of('near miss', 'reason'))];
}

/** The markers for one line: ends first, then one-line labels, then begins, outer ranges first. */
function markerLine(text, n, labels) {
  if (/\\\s*$/.test(text)) throw new Error(`line ${n} continues with a backslash: a comment cannot go there`);
  const ends = labels.filter((l) => l.lines[1] === n && l.lines[0] !== n);
  const ones = labels.filter((l) => l.lines[0] === n && l.lines[1] === n);
  const begins = labels.filter((l) => l.lines[0] === n && l.lines[1] !== n).sort((a, b) => b.lines[1] - a.lines[1]);
  const marks = [...ends.map((l) => formatMarker(l.kind, l.rule, 'ends')), ...ones.map((l) => formatMarker(l.kind, l.rule, 'one', l.note)), ...begins.map((l) => formatMarker(l.kind, l.rule, 'begins', l.note))];
  return marks.length ? `${text.trimEnd()}  ${marks.join(' ')}` : text;
}

const key = (l) => `${l.kind}|${l.rule}|${l.lines.join('-')}|${l.note}`;

for (const entry of jsonFiles()) {
  const labels = labelsOf(entry);
  const byFile = new Map();
  for (const l of labels) byFile.set(l.path, [...(byFile.get(l.path) ?? []), l]);
  const written = [];
  for (const [path, ls] of byFile) {
    const text = readFileSync(path, 'utf8');
    if (readMarkers(path, text, known).length) throw new Error(`${path}: already has markers`);
    const out = text.split('\n').map((line, i) => {
      try { return markerLine(line, i + 1, ls); } catch (e) { throw new Error(`${path}:${e.message}`); }
    }).join('\n');
    const back = readMarkers(path, out, known).map(key).sort();
    const want = ls.map(key).sort();
    if (JSON.stringify(back) !== JSON.stringify(want)) throw new Error(`${path}: the markers do not read back as the labels:\n  read ${back.join('\n       ')}\n  want ${want.join('\n       ')}`);
    written.push([path, out]);
  }
  for (const [path, out] of written) writeFileSync(path, out);
  unlinkSync(entry.json);
  console.log(`${entry.json}: ${labels.length} labels into ${written.map(([p]) => p.slice(dirname(entry.json).length + 1)).join(', ')}`);
}
