// Unified diff of a file from its edits (which never overlap), in the form `git apply` takes.
import { dirname, isAbsolute, relative, resolve } from 'node:path';
import type { Edit } from './synthesize.js';

const CONTEXT = 3;

interface Change { oldStart: number; oldLines: string[]; newLines: string[] }

function splitLines(text: string): string[] {
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines;
}

/** The path a diff header gives: relative to the working directory when the file is under it,
 *  else relative to `root` when under that (apply it there), else relative to the file's own
 *  directory (apply it there): `git apply` refuses absolute paths and `..`. */
export function diffPath(path: string, root?: string): string {
  return relative(diffBase(path, root), resolve(path)).replace(/\\/g, '/');
}

/** The directory a diff's paths are relative to (see diffPath). */
export function diffBase(path: string, root?: string): string {
  const under = (dir: string) => { const r = relative(resolve(dir), resolve(path)); return r && !r.startsWith('..') && !isAbsolute(r); };
  if (under(process.cwd())) return process.cwd();
  if (root && under(root)) return resolve(root);
  return dirname(resolve(path));
}

/** The 0-based line of an index, by binary search over the line starts (a scan from the start
 *  per edit would make the diff quadratic in the number of sites). */
function lineIndex(text: string): (i: number) => number {
  const starts = [0];
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) starts.push(i + 1);
  return (i) => {
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid] <= i) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  };
}

export function unifiedDiff(path: string, original: string, edits: Edit[], root?: string): string {
  if (!edits.length) return '';
  const old = splitLines(original);
  const lineOf = lineIndex(original);
  const changes: Change[] = [];
  // edits on the same lines are shown together, all of them applied to those lines
  let group: { first: number; last: number; lineStart: number; lineEnd: number; edits: Edit[] } | null = null;
  const flush = () => {
    if (!group) return;
    // an edit may take the last line's newline with it (and give one back)
    const stop = Math.max(group.lineEnd, ...group.edits.map((e) => e.end));
    let text = original.slice(group.lineStart, stop);
    for (const e of [...group.edits].sort((a, b) => b.start - a.start)) text = text.slice(0, e.start - group.lineStart) + e.text + text.slice(e.end - group.lineStart);
    changes.push({ oldStart: group.first, oldLines: old.slice(group.first, group.last + 1), newLines: splitLines(text.endsWith('\n') ? text : `${text}\n`) });
    group = null;
  };
  for (const e of [...edits].sort((a, b) => a.start - b.start)) {
    if (e.start === e.end && (e.start === 0 || original[e.start - 1] === '\n') && e.text.endsWith('\n') && !(group && group.lineEnd > e.start)) {
      // whole lines inserted before line lineOf(e.start)
      flush();
      changes.push({ oldStart: lineOf(e.start), oldLines: [], newLines: splitLines(e.text) });
      continue;
    }
    const first = lineOf(e.start);
    const last = e.end > e.start ? lineOf(e.end - 1) : first;
    const lineStart = original.lastIndexOf('\n', e.start - 1) + 1;
    let lineEnd = original.indexOf('\n', Math.max(e.end, e.start));
    if (e.end > e.start && original[e.end - 1] === '\n') lineEnd = e.end - 1;
    if (lineEnd < 0) lineEnd = original.length;
    if (group && group.last >= first) {
      group.last = Math.max(group.last, last);
      group.lineEnd = Math.max(group.lineEnd, lineEnd);
      group.edits.push(e);
      continue;
    }
    flush();
    group = { first, last, lineStart, lineEnd, edits: [e] };
  }
  flush();
  const hunks: string[] = [];
  let i = 0;
  let delta = 0;
  while (i < changes.length) {
    let j = i;
    while (j + 1 < changes.length && changes[j + 1].oldStart - (changes[j].oldStart + changes[j].oldLines.length) <= 2 * CONTEXT) j++;
    const from = Math.max(0, changes[i].oldStart - CONTEXT);
    const endOld = Math.min(old.length, changes[j].oldStart + changes[j].oldLines.length + CONTEXT);
    const body: string[] = [];
    let cursor = from;
    let newCount = 0;
    let localDelta = 0;
    for (let k = i; k <= j; k++) {
      const c = changes[k];
      for (; cursor < c.oldStart; cursor++) { body.push(` ${old[cursor]}`); newCount++; }
      for (const l of c.oldLines) body.push(`-${l}`);
      for (const l of c.newLines) { body.push(`+${l}`); newCount++; }
      cursor = c.oldStart + c.oldLines.length;
      localDelta += c.newLines.length - c.oldLines.length;
    }
    for (; cursor < endOld; cursor++) { body.push(` ${old[cursor]}`); newCount++; }
    const oldCount = endOld - from;
    // one line at a time: a hunk of a large generated file can have more lines than a call
    // takes arguments
    hunks.push(`@@ -${from + 1},${oldCount} +${from + 1 + delta},${newCount} @@`);
    for (const line of body) hunks.push(line);
    delta += localDelta;
    i = j + 1;
  }
  const p = diffPath(path, root);
  return `--- a/${p}\n+++ b/${p}\n${hunks.join('\n')}\n`;
}
