// What python3 refuses that tree-sitter's grammar accepts: the grammar keeps Python 2 forms (print
// and exec statements, `<>`, backquotes, `except E, e`) and its indentation scanner measures a
// tab as 8 columns with no check that the file reads the same at other tab sizes. Left alone, such
// a file is analysed as valid and rewritten around statements Python would never run.
import type { Diagnostic } from '../diag.js';
import { posAt, type SourceText } from './source.js';
import type { SyntaxNode } from './syntax-node.js';

interface Found { index: number; line?: number; col?: number; message: string }

/** The first place python3 would reject that the parse did not, as a syntax diagnostic. */
export function python3Refusal(source: SourceText, root: SyntaxNode): Diagnostic | undefined {
  const indent = indentationError(source.text);
  const legacy = legacyForm(source.text, root);
  const first = !indent ? legacy : !legacy ? indent : indent.index <= legacy.index ? indent : legacy;
  if (!first) return undefined;
  const p = posAt(source, first.index);
  return { severity: 'error', code: 'syntax', file: source.path, line: p.line, col: p.col, message: first.message };
}

// Words and marks that can start a Python 2 form; most hits are Python 3 code (`print(`, `raise E`)
// that the node at the hit rules out. Integer literals start at a digit after a non-word character.
const CANDIDATE = /\b(?:print|exec|except|raise|ur|UR|uR|Ur)\b|<>|`|(?<![\w.])\d[\w]*[lL]\b|(?<![\w.])0[0-9_]*[1-9]/g;

function legacyForm(text: string, root: SyntaxNode): Found | undefined {
  CANDIDATE.lastIndex = 0;
  for (let m = CANDIDATE.exec(text); m; m = CANDIDATE.exec(text)) {
    const message = legacyAt(root, m.index);
    if (message) return { index: m.index, message };
  }
  return undefined;
}

/** Why python3 refuses the node that starts at `index`, if one does. Only the nodes around `index`
 *  are visited, so a hit costs the depth of the tree, not its size. */
function legacyAt(root: SyntaxNode, index: number): string | undefined {
  for (let node: SyntaxNode | undefined = root; node; node = childAround(node, index)) {
    if (node.startIndex !== index) continue;
    switch (node.type) {
      // `print >>f, x` reads in Python 3 as the tuple `(print >> f), x`
      case 'print_statement': if (node.children.some((c) => c.type === 'chevron')) break; return "syntax error: Python 2 print statement (Python 3 calls print(...))";
      case 'exec_statement': return "syntax error: Python 2 exec statement (Python 3 calls exec(...))";
      case '<>': return "syntax error: '<>' is Python 2 (Python 3 writes '!=')";
      case 'except_clause':
        if (node.children.some((c) => c.type === ',')) return 'syntax error: `except E, name` is Python 2 (Python 3 writes `except E as name`)';
        break;
      case 'raise_statement':
        if (node.namedChildren[0]?.type === 'expression_list') return 'syntax error: `raise E, value` is Python 2 (Python 3 writes `raise E(value)`)';
        break;
      case 'string': {
        const head = node.text;
        if (head.startsWith('`')) return 'syntax error: backquotes are Python 2 (Python 3 calls repr(...))';
        if (/^ur/i.test(head)) return "syntax error: the string prefix 'ur' is Python 2";
        break;
      }
      case 'integer': {
        const t = node.text;
        if (/[jJ]$/.test(t)) break;
        if (/[lL]$/.test(t)) return `syntax error: the long suffix in '${t}' is Python 2`;
        if (/^0[0-9_]*[1-9]/.test(t)) return `syntax error: leading zeros in '${t}' (Python 3 writes octal as 0o...)`;
        break;
      }
    }
  }
  return undefined;
}

function childAround(node: SyntaxNode, index: number): SyntaxNode | undefined {
  const kids = node.children;
  let lo = 0, hi = kids.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const k = kids[mid];
    if (k.endIndex <= index) lo = mid + 1;
    else if (k.startIndex > index) hi = mid - 1;
    else return k;
  }
  return undefined;
}

const TAB_SIZE = 8;
const INCONSISTENT = 'syntax error: inconsistent use of tabs and spaces in indentation';

/** CPython's tokenizer measures each logical line's indentation twice, a tab as 8 columns and as
 *  1, and refuses a file where the two orders of blocks disagree (TabError), or where a line
 *  dedents to a width no open block has. Lines inside brackets, strings and after a backslash do
 *  not start logical lines and are skipped, as are blank and comment-only lines. */
export function indentationError(text: string): Found | undefined {
  const cols = [0];
  const alts = [0];
  let depth = 0;
  let i = 0;
  const n = text.length;
  while (i < n) {
    // a logical line starts here
    let col = 0, alt = 0, j = i;
    for (; j < n; j++) {
      const c = text.charCodeAt(j);
      if (c === 32) { col++; alt++; } else if (c === 9) { col = (Math.floor(col / TAB_SIZE) + 1) * TAB_SIZE; alt++; } else if (c === 12) { col = 0; alt = 0; } else break;
    }
    const c = text.charCodeAt(j);
    const blank = j >= n || c === 10 || c === 13 || c === 35;
    if (!blank) {
      const top = cols.length - 1;
      if (col === cols[top]) {
        if (alt !== alts[top]) return { index: i, message: INCONSISTENT };
      } else if (col > cols[top]) {
        if (alt <= alts[top]) return { index: i, message: INCONSISTENT };
        cols.push(col); alts.push(alt);
      } else {
        while (cols.length > 1 && col < cols[cols.length - 1]) { cols.pop(); alts.pop(); }
        if (col !== cols[cols.length - 1]) return { index: i, message: 'syntax error: unindent does not match any outer indentation level' };
        if (alt !== alts[alts.length - 1]) return { index: i, message: INCONSISTENT };
      }
    }
    // the rest of the logical line: up to a newline outside brackets, strings and continuations
    i = j;
    for (;;) {
      if (i >= n) return undefined;
      const ch = text.charCodeAt(i);
      if (ch === 10) { i++; if (depth === 0) break; continue; }
      if (ch === 35) { const e = text.indexOf('\n', i); i = e < 0 ? n : e; continue; }
      if (ch === 92) { i += text.charCodeAt(i + 1) === 13 && text.charCodeAt(i + 2) === 10 ? 3 : 2; continue; }
      if (ch === 40 || ch === 91 || ch === 123) depth++;
      else if ((ch === 41 || ch === 93 || ch === 125) && depth > 0) depth--;
      else if (ch === 34 || ch === 39) { i = stringEnd(text, i); continue; }
      i++;
    }
  }
  return undefined;
}

/** The index after the string literal whose opening quote is at `i` (a backslash escapes the next
 *  character in every kind of string, raw ones included, as far as finding the end goes). */
function stringEnd(text: string, i: number): number {
  const q = text[i];
  const triple = text.startsWith(q + q + q, i);
  const close = triple ? q + q + q : q;
  let k = i + close.length;
  while (k < text.length) {
    const c = text[k];
    if (c === '\\') { k += 2; continue; }
    if (!triple && c === '\n') return k;
    if (text.startsWith(close, k)) return k + close.length;
    k++;
  }
  return text.length;
}
