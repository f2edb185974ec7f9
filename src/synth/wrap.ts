// Lines the rewrite adds, wrapped as black would at the file's line length: an `if` whose
// conditions do not fit gets them one per line inside parentheses, and a call that does not
// fit gets its arguments on their own lines.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

export const DEFAULT_LINE_LENGTH = 88;

const CONFIGS: [string, RegExp][] = [
  ['pyproject.toml', /^\s*line[-_]length\s*=\s*(\d+)/m],
  ['setup.cfg', /^\s*max[-_]line[-_]length\s*=\s*(\d+)/m],
  ['tox.ini', /^\s*max[-_]line[-_]length\s*=\s*(\d+)/m],
  ['.flake8', /^\s*max[-_]line[-_]length\s*=\s*(\d+)/m],
];

/** The line length a file is kept to: from the nearest formatter or linter configuration above
 *  it (black's or ruff's `line-length`, flake8's `max-line-length`), else black's default. */
export function lineLengthFor(path: string): number {
  for (let dir = dirname(resolve(path)); ; dir = dirname(dir)) {
    for (const [name, re] of CONFIGS) {
      const file = join(dir, name);
      if (!existsSync(file)) continue;
      const m = re.exec(readFileSync(file, 'utf8'));
      if (m && Number(m[1]) >= 40) return Number(m[1]);
    }
    if (dirname(dir) === dir) return DEFAULT_LINE_LENGTH;
  }
}

/** `text` split where `sep` occurs outside brackets and string literals. */
function splitTopLevel(text: string, sep: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let quote = '';
  let from = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quote) {
      if (c === '\\') i++;
      else if (c === quote) quote = '';
      continue;
    }
    if (c === '"' || c === "'") quote = c;
    else if ('([{'.includes(c)) depth++;
    else if (')]}'.includes(c)) depth--;
    else if (depth === 0 && text.startsWith(sep, i)) {
      out.push(text.slice(from, i).trim());
      from = i + sep.length;
      i += sep.length - 1;
    }
  }
  out.push(text.slice(from).trim());
  return out;
}

/** `if <conditions>:` at `indent`: one line when it fits in `width`; else, as black writes it,
 *  the conditions inside parentheses on one line of their own, or one per line. */
export function ifHeader(indent: string, conditions: string[], width: number, unit = '    '): string[] {
  const joined = conditions.join(' and ');
  if (`${indent}if ${joined}:`.length <= width) return [`${indent}if ${joined}:`];
  const inside = `${indent}${unit}`;
  if (inside.length + joined.length <= width) return [`${indent}if (`, inside + joined, `${indent}):`];
  const operands = conditions.flatMap((c) => splitTopLevel(c, ' and '));
  // an operand still too long has its own call split in turn
  return [`${indent}if (`, ...operands.flatMap((o, i) => wrapCall(inside, `${i ? 'and ' : ''}${o}`, width, unit)), `${indent}):`];
}

/** The index of the bracket that the `)` at `close` closes, or -1. */
function openingOf(line: string, close: number): number {
  let depth = 0;
  let quote = '';
  for (let i = close; i >= 0; i--) {
    const c = line[i];
    if (quote) { if (c === quote && line[i - 1] !== '\\') quote = ''; continue; }
    if (c === '"' || c === "'") quote = c;
    else if (')]}'.includes(c)) depth++;
    else if ('([{'.includes(c) && --depth === 0) return i;
  }
  return -1;
}

/** A statement line at `indent` (`unit` one level deeper: four spaces, or a tab in a file indented
 *  with tabs): as it is when it fits in `width`; else a call ending it
 *  (`x = f(a, b)`, `return f(a, b).t()`) split as black splits it: its arguments on one line of
 *  their own, or one per line with a trailing comma, a short trailing call kept after the `)`. */
export function wrapCall(indent: string, line: string, width: number, unit = '    '): string[] {
  if (indent.length + line.length <= width || line.includes('\n') || !line.endsWith(')')) return [indent + line];
  let close = line.length - 1;
  for (;;) {
    const open = openingOf(line, close);
    if (open <= 0 || !/[\w)\]]$/.test(line.slice(0, open))) return [indent + line];
    const head = line.slice(0, open + 1);
    // a head still too long with a short call after it (`.transpose(-2, -1)`): split the call before
    const before = /\)\.\w+$/.test(line.slice(0, open)) ? line.lastIndexOf(')', open) : -1;
    if (indent.length + head.length > width && before > 0) { close = before; continue; }
    const inner = line.slice(open + 1, close).trim();
    const tail = line.slice(close);
    if (!inner) return [indent + line];
    const inside = `${indent}${unit}`;
    if (inside.length + inner.length <= width) return [indent + head, inside + inner, indent + tail];
    const args = splitTopLevel(inner, ',').filter(Boolean);
    return [indent + head, ...args.map((x) => `${inside}${x},`), indent + tail];
  }
}
