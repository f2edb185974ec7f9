// fixtures/real/labels.json: per pinned package, per file (relative to the unpacked archive),
// the sites a reader finds (category, lines, anchor, note) and near misses that are not sites.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CATEGORIES, type LabelSite } from './real-score.js';

export interface NearMissLabel { line: number; category: string; note: string }
export interface FileLabels { sites: LabelSite[]; near_misses?: NearMissLabel[] }
export interface LabelsDoc { packages: Record<string, Record<string, FileLabels>> }

function fail(where: string, what: string): never {
  throw new Error(`${where}: ${what}`);
}

/** Reads and checks the labels file; every problem names the package, file and site. */
export function readLabels(path: string): LabelsDoc {
  let doc: LabelsDoc;
  try {
    doc = JSON.parse(readFileSync(path, 'utf8')) as LabelsDoc;
  } catch (e) {
    fail(path, `cannot read labels: ${(e as Error).message}`);
  }
  if (!doc || typeof doc.packages !== 'object') fail(path, "no 'packages' object");
  const known = new Set<string>(CATEGORIES);
  for (const [pin, files] of Object.entries(doc.packages)) {
    for (const [file, labels] of Object.entries(files)) {
      const where = `${path}: ${pin} ${file}`;
      if (!Array.isArray(labels.sites)) fail(where, "no 'sites' list");
      labels.sites.forEach((s, i) => {
        if (!known.has(s.category)) fail(`${where} site ${i + 1}`, `unknown category '${s.category}'`);
        const [a, b] = s.lines ?? [];
        if (!Number.isInteger(a) || !Number.isInteger(b) || a < 1 || b < a) fail(`${where} site ${i + 1}`, `bad lines ${JSON.stringify(s.lines)}`);
        if (typeof s.anchor !== 'string' || !s.anchor.trim()) fail(`${where} site ${i + 1}`, 'missing anchor');
      });
    }
  }
  return doc;
}

export function labelsPath(root: string): string {
  return join(root, 'fixtures', 'real', 'labels.json');
}
