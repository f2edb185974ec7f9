// The edits synthesis makes to one file, and the indexes that keep a file of thousands of sites
// linear: which other site's code a statement holds, which accepted edit a new one overlaps.
import type { SyntaxNode } from '../parse/python.js';
import { parsePython } from '../parse/python.js';
import { posAt, sourceFromText, type SourceText } from '../parse/source.js';
import type { SynthFile } from './source.js';
import { indentationError } from '../parse/python3-rules.js';
import { editsParseLocally, rewrittenParses, type PlacedEdit } from './syntax-check.js';

export const KERNELS_ALIAS = '_adopt';
export const PREAMBLE = [
  'try:  # adopt: use fused kernels where adopt_kernels is installed, the original code otherwise',
  `    import adopt_kernels as ${KERNELS_ALIAS}`,
  'except ImportError:  # adopt',
  `    ${KERNELS_ALIAS} = None`,
];

export interface Edit {
  start: number; end: number; text: string; rule: string; line: number;
  /** Edits elsewhere the site needs as well (a flag declared by a helper and passed by its
   *  callers): all are applied or none. */
  also?: Edit[];
}

export type Decision = 'rewritten' | 'skipped';

export interface SiteResult {
  rule: string;
  file: string;
  owner: string;
  method: string;
  lines: [number, number];
  bindings: Record<string, string>;
  guards: string[];
  decision: Decision;
  reason: string;
}

export interface FileResult {
  path: string;
  original: string;
  rewritten: string;
  edits: Edit[];
  error?: string;
}

/** The source ranges of every site's matched code in a file, sorted, to ask which lie inside a
 *  statement without looking at every site. */
export class SiteSpans<T> {
  private readonly entries: { start: number; end: number; owner: T }[] = [];

  add(start: number, end: number, owner: T): void { this.entries.push({ start, end, owner }); }

  /** Call once all ranges are added. */
  seal(): this {
    this.entries.sort((a, b) => a.start - b.start);
    return this;
  }

  /** Whether a range of a site other than `self` lies within [start, end]. */
  holdsOther(start: number, end: number, self: T): boolean {
    let lo = 0;
    let hi = this.entries.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.entries[mid].start < start) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < this.entries.length && this.entries[i].start <= end; i++) {
      const e = this.entries[i];
      if (e.end <= end && e.owner !== self) return true;
    }
    return false;
  }
}

/** Accepted edits, bucketed by the lines they cover, so a new edit is checked only against those
 *  on its own lines. Edits are reported in the order they were accepted. */
export class EditSet {
  readonly all: Edit[] = [];
  private readonly byLine = new Map<number, { edit: Edit; seq: number }[]>();

  constructor(private readonly source: SourceText) {}

  private lines(e: { start: number; end: number }): [number, number] {
    const first = posAt(this.source, e.start).line;
    return [first, e.end > e.start ? posAt(this.source, e.end - 1).line : first];
  }

  private near(e: { start: number; end: number }): { edit: Edit; seq: number }[] {
    const [a, b] = this.lines(e);
    const out: { edit: Edit; seq: number }[] = [];
    for (let l = a; l <= b; l++) for (const x of this.byLine.get(l) ?? []) out.push(x);
    return out.sort((x, y) => x.seq - y.seq);
  }

  /** The first accepted edit identical to `e`. */
  same(e: Edit): Edit | undefined {
    return this.near(e).find(({ edit: x }) => x.start === e.start && x.end === e.end && x.text === e.text)?.edit;
  }

  /** The first accepted edit that `e` overlaps (two insertions at one point overlap). */
  clash(e: Edit): Edit | undefined {
    return this.near(e).find(({ edit: x }) => (e.start < x.end && x.start < e.end) || (e.start === e.end && e.start === x.start && x.start === x.end))?.edit;
  }

  add(e: Edit): void {
    const seq = this.all.length;
    this.all.push(e);
    const [a, b] = this.lines(e);
    for (let l = a; l <= b; l++) {
      const list = this.byLine.get(l);
      if (list) list.push({ edit: e, seq });
      else this.byLine.set(l, [{ edit: e, seq }]);
    }
  }
}

/** The file with its edits applied (and the import block where an edit calls the kernels); the
 *  original, with an error, when the result would not parse. */
export function applyEdits(f: SynthFile, edits: Edit[]): FileResult {
  const original = f.source.text;
  const all = [...edits];
  // only where an edit calls the kernels (a rule may rewrite without them)
  const needsImport = edits.some((e) => new RegExp(`\\b${KERNELS_ALIAS}\\b`).test(e.text));
  // an activation handed over with its keywords (`functools.partial(F.gelu, approximate="tanh")`)
  const needsFunctools = edits.some((e) => /(?<![\w.])functools\.partial\(/.test(e.text)) && !bindsModule(f.root, 'functools');
  // an activation named in full (`torch.nn.functional.silu`) in a file that imports only
  // `torch.nn.functional as F` and `from torch import nn`, which bind no `torch`
  const needsTorch = edits.some((e) => /(?<![\w.])torch\./.test(e.text)) && !bindsModule(f.root, 'torch');
  const preamble = needsImport && !original.includes(`import adopt_kernels as ${KERNELS_ALIAS}`);
  if (preamble || needsFunctools || needsTorch) all.push(preambleEdit(f.root, original, f.newline, { kernels: preamble, functools: needsFunctools, torch: needsTorch }));
  const { text, placed } = spliceEdits(original, all);
  const result: FileResult = { path: f.path, original, rewritten: text, edits: all };
  // never hand back code that does not parse
  if (edits.length && !f.hadErrors && !rewrittenParses(f.root, original, placed, text)) {
    const re = parsePython(sourceFromText(f.path, text));
    const d = re.diagnostics.find((x) => x.severity === 'error');
    result.error = `${f.path}: the rewritten code would not parse${d ? ` (${d.line}:${d.col}: ${d.message})` : ''}; nothing written`;
    result.rewritten = original;
  }
  return result;
}

/** Of the edits of a file, grouped by the site that made them (a site's edits are kept or
 *  dropped together), those that give code python3 would not parse when applied alone: group
 *  index -> the reason, for --why-not. Each group is checked on its own edited region where that
 *  tells, and on the whole text with only its edits otherwise. A file whose edits do not parse
 *  together then loses only those sites; the rest are written. */
export function unparsableSites(f: SynthFile, groups: Edit[][]): Map<number, string> {
  const out = new Map<number, string>();
  if (f.hadErrors) return out;
  const original = f.source.text;
  groups.forEach((edits, i) => {
    if (editsParseLocally(f.root, original, edits)) return;
    const { text } = spliceEdits(original, edits);
    const re = parsePython(sourceFromText(f.path, text));
    const d = re.diagnostics.find((x) => x.severity === 'error');
    const tab = d ? undefined : indentationError(text);
    if (!d && !tab) return;
    const where = d ? `${d.line}:${d.col}: ${d.message}` : `${posAt(re.source, tab!.index).line}: ${tab!.message}`;
    out.set(i, `the rewritten code would not parse (${where}); the site is left as it is`);
  });
  return out;
}

/** The analysis's own name for a value (`%5`, as in `self.bns[%5]`) in code about to be written:
 *  it has no meaning in Python. A `%` that is Python's modulo follows an operand; this one follows
 *  a bracket, a comma, an operator or a keyword (strings count as operands, comments as nothing).
 *  The name, or undefined. */
export function irValueIn(code: string): string | undefined {
  const plain = code.replace(/(?:[rRbBuUfF]{0,2})(?:'''[\s\S]*?'''|"""[\s\S]*?"""|'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*")|#[^\n]*/g, (m) => (m.startsWith('#') ? ' ' : 'x').repeat(m.length));
  const m = /(?:^|[^\w\s)\]}]|\b(?:return|and|or|not|in|is|if|else|lambda|yield|await)\s)\s*(%\d+)/.exec(plain);
  return m?.[1];
}

/** The text with the edits applied, and where each edit's text begins in it, in the order they
 *  were applied. At one point: insertions before a replacement, the one added last first (as
 *  applying them one by one from the end of the file would place them). */
export function spliceEdits(original: string, edits: Edit[]): { text: string; placed: PlacedEdit[] } {
  // pieces joined once: splicing the whole text per edit is quadratic in the number of sites
  const pieces: string[] = [];
  const placed: PlacedEdit[] = [];
  let at = 0;
  let size = 0;
  const order = edits.map((e, i) => ({ e, i })).sort((a, b) => a.e.start - b.e.start || Number(a.e.end > a.e.start) - Number(b.e.end > b.e.start) || b.i - a.i);
  for (const { e } of order) {
    size += e.start - at;
    placed.push({ edit: e, at: size });
    size += e.text.length;
    pieces.push(original.slice(at, e.start), e.text);
    at = e.end;
  }
  pieces.push(original.slice(at));
  return { text: pieces.join(''), placed };
}

/** Whether the module binds a top-level package's name itself (`import functools`, `import
 *  torch`, `import torch.nn`; not `import torch.nn as nn` nor `from torch import nn`). */
function bindsModule(root: SyntaxNode, name: string): boolean {
  return root.namedChildren.some((s) => s.type === 'import_statement' && s.namedChildren.some((n) => n.type === 'dotted_name' && (n.text === name || n.text.startsWith(`${name}.`))));
}

/** After the module's leading docstring, `from __future__` and import block: the kernels' guarded
 *  import, and `import functools` or `import torch` where a rewrite needs it. */
export function preambleEdit(root: SyntaxNode, text: string, nl: string, need: { kernels: boolean; functools: boolean; torch?: boolean } = { kernels: true, functools: false }): Edit {
  let at = 0;
  let seenStatement = false;
  for (const stmt of root.namedChildren) {
    // the docstring is the first statement, after any comments (a licence header): imports go
    // below it, or `__doc__` would change
    const isDoc = stmt.type === 'expression_statement' && stmt.namedChildren[0]?.type === 'string' && !seenStatement;
    if (stmt.type !== 'comment') seenStatement = true;
    if (stmt.type === 'import_statement' || stmt.type === 'import_from_statement' || stmt.type === 'future_import_statement' || isDoc || stmt.type === 'comment') {
      at = stmt.endIndex;
      continue;
    }
    break;
  }
  const block = [...(need.functools ? ['import functools  # adopt'] : []), ...(need.torch ? ['import torch  # adopt'] : []), ...(need.kernels ? PREAMBLE : [])].join(nl);
  if (at === 0) return { start: 0, end: 0, text: block + nl + nl, rule: 'import', line: 1 };
  // insert whole lines after the import block's last line
  const eol = text.indexOf('\n', at);
  const lineStart = eol < 0 ? text.length : eol + 1;
  return { start: lineStart, end: lineStart, text: (eol < 0 ? nl : '') + nl + block + nl, rule: 'import', line: 1 };
}
