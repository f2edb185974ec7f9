// Whether a rewritten file parses, checked on the edited regions alone where that is enough.
// Parsing the whole rewritten text costs as much as parsing the input again, for a few changed
// lines in a large file. An edit that lies within a run of whole statements of one block, with
// nothing else on their lines, changes what the file means only inside that run: replace the run
// by any sequence of statements at the same indentation and the rest of the file parses as before.
// So each such run is parsed on its own, rewritten, at its indentation (as the body of a `def`
// when it is indented), and all runs go through the parser together, one after another. Anything the
// local check cannot vouch for (an edit it cannot place, a run that does not parse on its own,
// statements that end up outside their run) falls back to parsing the whole text, which also
// gives the error's place.
import { hasSyntaxErrors, topLevelSpans, type SyntaxNode } from '../parse/python.js';
import { indentationError } from '../parse/python3-rules.js';

/** An edit (a range of the original replaced by text) and where its text begins in the
 *  rewritten text. */
export interface PlacedEdit { edit: { start: number; end: number; text: string }; at: number }

/** A range of the original text made of whole lines, with the edits inside it. */
interface Region { start: number; end: number; edits: PlacedEdit[] }

const STATEMENT_LISTS = new Set(['module', 'block']);

/**
 * Whether `rewritten` (`original` with `placed` applied, in the order they were applied) parses
 * without syntax errors. `root` is the original's syntax tree, which must be free of errors.
 */
export function rewrittenParses(root: SyntaxNode, original: string, placed: PlacedEdit[], rewritten: string): boolean {
  // tree-sitter measures a tab as 8 columns and nothing else: python3 also refuses blocks whose
  // order differs when a tab is 1 column (TabError), which only a look at the indentation shows
  return (parsesLocally(root, original, placed, rewritten) || !hasSyntaxErrors(rewritten)) && !indentationError(rewritten);
}

/** True when the edited regions alone show that the rewritten text parses; false when they
 *  cannot tell (an edit outside any run of whole statements, or a region that does not parse on
 *  its own), and the whole text has to be parsed. */
export function parsesLocally(root: SyntaxNode, original: string, placed: PlacedEdit[], rewritten: string): boolean {
  const regions = editedRegions(root, original, placed);
  return !!regions && regionsParse(regions, original, (r) => regionText(r, rewritten));
}

/** Whether `edits` (non-overlapping ranges of `original`), applied alone, give code python3
 *  parses, told from the edited regions only: true when they parse there, false when the regions
 *  cannot tell (the whole text must then be parsed). A file's sites are checked one by one with
 *  this, at the cost of their own regions, not of the file. */
export function editsParseLocally(root: SyntaxNode, original: string, edits: { start: number; end: number; text: string }[]): boolean {
  const regions = editedRegions(root, original, edits.map((edit) => ({ edit, at: 0 })));
  return !!regions && regionsParse(regions, original, (r) => {
    // the region's original text with its edits spliced in
    let out = '';
    let at = r.start;
    for (const { edit } of [...r.edits].sort((a, b) => a.edit.start - b.edit.start || a.edit.end - b.edit.end)) {
      out += original.slice(at, edit.start) + edit.text;
      at = edit.end;
    }
    return out + original.slice(at, r.end);
  });
}

/** The regions holding the edits, merged where they touch; undefined when an edit lies in no run
 *  of whole statements. */
function editedRegions(root: SyntaxNode, text: string, placed: PlacedEdit[]): Region[] | undefined {
  const finder = new RunFinder(text);
  const found: Region[] = [];
  for (const p of placed) {
    const run = finder.run(root, p.edit.start, p.edit.end);
    if (!run) return undefined;
    found.push({ ...run, edits: [p] });
  }
  found.sort((a, b) => a.start - b.start || a.end - b.end);
  const merged: Region[] = [];
  for (const r of found) {
    const last = merged[merged.length - 1];
    // touching regions are merged too: an insertion at the boundary then belongs to one region
    if (last && r.start <= last.end) {
      last.end = Math.max(last.end, r.end);
      last.edits.push(...r.edits);
    } else merged.push({ start: r.start, end: r.end, edits: [...r.edits] });
  }
  return merged;
}

/** Finds, for a range of the original text, the innermost run of whole-line statements of one
 *  block (or of the module) that holds it. */
class RunFinder {
  private readonly kids = new Map<SyntaxNode, SyntaxNode[]>();
  constructor(private readonly text: string) {}

  run(list: SyntaxNode, start: number, end: number): { start: number; end: number } | undefined {
    const kids = this.statements(list);
    // the last statement whose line starts at or before `start`, the first whose line ends at
    // or after `end` (line starts and ends grow with the index)
    let lo = 0;
    let hi = kids.length;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (this.lineStart(kids[mid].startIndex) <= start) lo = mid + 1; else hi = mid; }
    const i = lo - 1;
    if (i < 0) return undefined;
    lo = i;
    hi = kids.length;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (this.lineEnd(kids[mid].endIndex) < end) lo = mid + 1; else hi = mid; }
    const j = lo;
    if (j >= kids.length) return undefined;
    if (i === j) {
      // within one statement: the run inside the block that holds the range, when there is one
      for (const block of blocksOf(kids[i])) {
        const inner = this.statements(block);
        if (!inner.length || this.lineStart(inner[0].startIndex) > start || this.lineEnd(inner[inner.length - 1].endIndex) < end) continue;
        const run = this.run(block, start, end);
        if (run) return run;
      }
    }
    if (!this.ownsLines(kids[i].startIndex, kids[j].endIndex)) return undefined;
    return { start: this.lineStart(kids[i].startIndex), end: this.lineEnd(kids[j].endIndex) };
  }

  /** The statements of a module or block, comments left out (they may share a statement's line). */
  private statements(list: SyntaxNode): SyntaxNode[] {
    let kids = this.kids.get(list);
    if (!kids) this.kids.set(list, (kids = list.namedChildren.filter((k) => k.type !== 'comment')));
    return kids;
  }

  private lineStart(index: number): number {
    return this.text.lastIndexOf('\n', index - 1) + 1;
  }

  /** Just after the newline that ends the line of `index` (the end of the text on the last line). */
  private lineEnd(index: number): number {
    const nl = this.text.indexOf('\n', index);
    return nl < 0 ? this.text.length : nl + 1;
  }

  /** Nothing but indentation before `start` on its line, nothing but a comment after `end`. */
  private ownsLines(start: number, end: number): boolean {
    const before = this.text.slice(this.lineStart(start), start);
    const after = this.text.slice(end, this.lineEnd(end));
    return /^[ \t\f]*$/.test(before) && /^[ \t\f]*(#.*)?\r?\n?$/.test(after);
  }
}

/** The blocks a compound statement holds directly (a body, a branch, a handler), not those of
 *  statements nested in them. */
function blocksOf(stmt: SyntaxNode): SyntaxNode[] {
  const out: SyntaxNode[] = [];
  const stack = [...stmt.namedChildren];
  while (stack.length) {
    const n = stack.pop()!;
    if (n.type === 'block') out.push(n);
    else if (!STATEMENT_LISTS.has(n.type)) stack.push(...n.namedChildren);
  }
  return out;
}

/** Every region, rewritten, parsed in one text: each must parse on its own and keep its
 *  statements to itself. */
function regionsParse(regions: Region[], original: string, textOf: (r: Region) => string): boolean {
  const parts: string[] = [];
  const spans: { start: number; end: number; wrapped: boolean }[] = [];
  let size = 0;
  // a region rewritten to the same text as one before it (a class repeated in a file) parses as
  // that one does: parsed once
  const seen = new Set<string>();
  for (const r of regions) {
    let code = textOf(r);
    if (!code.endsWith('\n')) code += '\n';
    // a last line continued with a backslash would take in the line after the region
    if (/\\\s*$/.test(code)) return false;
    // indented in the original: the statements of a block, parsed as a function's body. Every
    // line keeps at least that indentation, so the indentation seen by the parser is the same
    // there as in the file (a line indented less would close blocks that lie outside the region).
    const indent = /^[ \t\f]*/.exec(original.slice(r.start, r.start + 200))![0];
    const wrapped = indent.length > 0;
    if (wrapped && !everyLineIndented(code, indent)) return false;
    const part = wrapped ? `def _():\n${code}` : code;
    if (seen.has(part)) continue;
    seen.add(part);
    spans.push({ start: size, end: size + part.length, wrapped });
    parts.push(part);
    size += part.length;
  }
  const joined = parts.join('');
  const top = topLevelSpans(joined);
  // tabs and spaces mixed so that python3 reads the blocks otherwise (TabError), which the
  // parser does not see; every line keeps the region's indentation, so the region tells
  if (!top || indentationError(joined)) return false;
  // each top-level statement inside one region; an indented region is exactly its `def _():`
  let k = 0;
  for (const span of spans) {
    let statements = 0;
    for (; k < top.length && top[k].start < span.end; k++) {
      const c = top[k];
      if (c.end > span.end) return false;
      if (c.comment) continue;
      if (span.wrapped && c.start !== span.start) return false;
      statements++;
    }
    if (span.wrapped && statements !== 1) return false;
  }
  return true;
}

/** Whether every line of code that is not blank starts with `indent`. */
function everyLineIndented(code: string, indent: string): boolean {
  for (let at = 0; at < code.length;) {
    let nl = code.indexOf('\n', at);
    if (nl < 0) nl = code.length;
    if (!code.startsWith(indent, at) && code.slice(at, nl).trim() !== '') return false;
    at = nl + 1;
  }
  return true;
}

/** A region's text after the edits: the rewritten text from where its first edit's text begins
 *  (less the unchanged text before it) to where its last edit's text ends (plus the unchanged
 *  text after it). */
function regionText(r: Region, rewritten: string): string {
  const byPlace = [...r.edits].sort((a, b) => a.at - b.at || a.edit.start - b.edit.start || a.edit.end - b.edit.end);
  const first = byPlace[0];
  const last = byPlace[byPlace.length - 1];
  const from = first.at - (first.edit.start - r.start);
  const to = last.at + last.edit.text.length + (r.end - last.edit.end);
  return rewritten.slice(from, to);
}
