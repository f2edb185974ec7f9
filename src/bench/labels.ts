// Ground-truth labels written into the model sources as comments, so that editing a fixture moves
// its labels with the code instead of leaving line numbers behind. A marker is a comment at the
// end of a line:
//
//   x = self.query(h)  # site qkv_fusion begins: query/key/value Linear all read h
//   v = self.value(h)  # site qkv_fusion ends
//   p = s.softmax(-1)  # site softmax: softmax over the last dim          (one line: [n, n])
//   y = self.act(z)    # near miss linear_gelu: the activation is a ReLU   (likewise `begins`/`ends`)
//
// Several markers may share a line (` # ` between them; an `ends` is read before a `begins` of the
// same line). Ranges of the same kind and rule close in the order they opened: `ends` closes the
// earliest open one, as two interleaved sites do (q's rotation and k's, statement by statement). A source file with at least one marker is labelled: every site adopt finds in it is scored.
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { findPythonFiles } from '../analysis/project.js';
import { AdoptError } from '../diag.js';

export type LabelKind = 'site' | 'near miss';

export interface Label { kind: LabelKind; rule: string; path: string; lines: [number, number]; note: string }

/** What is planned together (one file, or a package directory) and the labels in it. */
export interface LabelledGroup { files: string[]; labels: Label[] }

type Edge = 'begins' | 'ends' | 'one';
interface Marker { kind: LabelKind; rule: string; edge: Edge; note: string }

const START = /#\s*(site|near miss)\s/g;
const MARKER = /^#\s*(site|near miss)\s+([A-Za-z_]\w*)(?:\s+(begins|ends))?\s*(?::\s*(.*?))?\s*$/;

/** The comment text of one marker. */
export function formatMarker(kind: LabelKind, rule: string, edge: Edge, note = ''): string {
  const head = `# ${kind} ${rule}${edge === 'one' ? '' : ` ${edge}`}`;
  return edge === 'ends' || !note ? head : `${head}: ${note}`;
}

/** A path as messages show it: relative to the working directory when under it. */
function shownPath(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel && !rel.startsWith('..') ? rel : path;
}

function markersOf(line: string, where: string): Marker[] {
  const starts = [...line.matchAll(START)].map((m) => m.index!);
  return starts.map((at, i) => {
    const text = line.slice(at, starts[i + 1] ?? line.length).trim();
    const m = MARKER.exec(text);
    if (!m) throw new AdoptError(`${where}: malformed label marker '${text}' (expected '# site RULE: note', '# site RULE begins: note' or '# site RULE ends', or the same with 'near miss')`);
    const edge = (m[3] ?? 'one') as Edge;
    if (edge === 'ends' && m[4]) throw new AdoptError(`${where}: '${m[1]} ${m[2]} ends' takes no note (the note goes on 'begins')`);
    return { kind: m[1] as LabelKind, rule: m[2], edge, note: m[4] ?? '' };
  }).sort((a, b) => Number(a.edge !== 'ends') - Number(b.edge !== 'ends'));
}

/** The labels marked in one source text. `known` is the set of rule names a marker may name. */
export function readMarkers(path: string, text: string, known: ReadonlySet<string>): Label[] {
  const shown = shownPath(path);
  const labels: Label[] = [];
  const open = new Map<string, { line: number; note: string }[]>();
  text.split('\n').forEach((line, i) => {
    const n = i + 1;
    for (const m of markersOf(line, `${shown}:${n}`)) {
      if (!known.has(m.rule)) throw new AdoptError(`${shown}:${n}: label marker names an unknown rule '${m.rule}' (rules: ${[...known].sort().join(', ')})`);
      const key = `${m.kind}\0${m.rule}`;
      const stack = open.get(key) ?? [];
      open.set(key, stack);
      if (m.edge === 'one') labels.push({ kind: m.kind, rule: m.rule, path, lines: [n, n], note: m.note });
      else if (m.edge === 'begins') stack.push({ line: n, note: m.note });
      else {
        const first = stack.shift();
        if (!first) throw new AdoptError(`${shown}:${n}: '${m.kind} ${m.rule} ends' closes no open range`);
        labels.push({ kind: m.kind, rule: m.rule, path, lines: [first.line, n], note: first.note });
      }
    }
  });
  for (const [key, stack] of open) {
    const [kind, rule] = key.split('\0');
    if (stack.length) throw new AdoptError(`${shown}:${stack[stack.length - 1].line}: '${kind} ${rule} begins' is never closed (no '${kind} ${rule} ends' below it)`);
  }
  return labels.sort((a, b) => a.lines[0] - b.lines[0] || a.lines[1] - b.lines[1]);
}

function labelsIn(files: string[], known: ReadonlySet<string>): Label[] {
  return files.flatMap((f) => readMarkers(f, readFileSync(f, 'utf8'), known));
}

/** The labelled model sources of a directory: each `.py` file with markers alone, and each
 *  package directory with markers in any of its files as one group (analysed across files). */
export function labelledGroups(dir: string, known: ReadonlySet<string>): LabelledGroup[] {
  const root = resolve(dir);
  const groups: LabelledGroup[] = [];
  for (const entry of readdirSync(root).sort()) {
    const p = join(root, entry);
    const isDir = statSync(p).isDirectory();
    const json = entry.endsWith('.labels.json') ? p : isDir && existsSync(join(p, 'labels.json')) ? join(p, 'labels.json') : null;
    if (json) throw new AdoptError(`${shownPath(json)}: labels are markers in the sources now; convert this file with scripts/labels-to-markers.mjs`);
    if (!isDir && !entry.endsWith('.py')) continue;
    const labels = labelsIn(isDir ? findPythonFiles(p) : [p], known);
    if (labels.length) groups.push({ files: [p], labels });
  }
  return groups;
}
