// A rule file that does not parse, told in the rule writer's words: where (the end of the line
// for a call left open, not the start of the next block), what was found, and what may stand
// there, with the grammar's layout markers and lexical helpers translated.
import { DEDENT, INDENT } from '../dsl/parse.js';

export interface SyntaxFailure { type: string; text: string }

/** The items a rule may hold, in the order the documentation gives them. */
export const RULE_ITEMS = ['title', 'priority', 'scope', 'bench', 'match', 'where', 'rewrite', 'detect', 'kernel', 'example'];

const DEEPER = 'a deeper indented line';
const MARKERS = new RegExp(`[${INDENT}${DEDENT}]`);

/** Index in the marked text to report, and the message. */
export function describeSyntaxError(marked: string, pos: number, failures: SyntaxFailure[]): { index: number; message: string } {
  const texts = [...new Set(failures.map((f) => f.text))];
  // what the parser ran into, skipping back over the layout it inserted and the line break
  let back = pos;
  while (back > 0 && (/\s/.test(marked[back - 1]) || MARKERS.test(marked[back - 1]))) back--;
  const crossedLine = marked.slice(back, pos).includes('\n') || (pos >= marked.length && back < pos);
  const closers = texts.filter((t) => [')', ']', ','].includes(t));
  if (crossedLine && closers.length && closers.length === texts.length) {
    return { index: back, message: `the line ends before its brackets are closed: expected ${orList(closers.map(quote))}` };
  }
  const found = foundAt(marked, pos);
  if (texts.includes(INDENT)) {
    return { index: pos, message: `expected an indented block: the lines under the line above must be indented deeper than it (found ${found.what})` };
  }
  if (texts.includes('not an identPart')) {
    return { index: found.start, message: `'${found.word}' is not a keyword here${found.keyword ? ` (did you mean '${found.keyword}' followed by a space?)` : ''}` };
  }
  if (RULE_ITEMS.every((k) => texts.includes(k))) {
    return { index: found.start, message: `${found.what} is not a rule item: a rule holds ${orList(RULE_ITEMS.map(quote))} lines, each indented under 'rule NAME'` };
  }
  if (found.what === DEEPER) {
    return { index: pos, message: 'this line is indented deeper than the line above it, which opens no block: the lines of one block line up under each other' };
  }
  const expected = orList([...new Set(texts.map(translate).filter((t): t is string => !!t))]);
  return { index: found.start, message: `unexpected ${found.what}${expected ? `; expected ${expected}` : ''}` };
}

function foundAt(marked: string, pos: number): { start: number; what: string; word: string; keyword?: string } {
  const rest = marked.slice(pos);
  if (!rest.replace(new RegExp(`[\\s${INDENT}${DEDENT}]`, 'g'), '')) return { start: pos, what: 'the end of the file', word: '' };
  if (MARKERS.test(rest[0])) return { start: pos, what: rest[0] === INDENT ? DEEPER : 'the end of the block', word: '' };
  // a word is reported whole, from its start, even when the parser stopped inside it
  let start = pos;
  while (start > 0 && /[A-Za-z0-9_]/.test(marked[start - 1]) && /[A-Za-z0-9_]/.test(marked[pos] ?? '')) start--;
  const word = (marked.slice(start).match(/^[A-Za-z0-9_]+/)?.[0] ?? marked.slice(start).match(/^\S+/)?.[0] ?? '').slice(0, 30);
  const keyword = start < pos ? marked.slice(start, pos) : undefined;
  return { start, what: word ? `'${word}'` : 'a blank', word, keyword };
}

function translate(text: string): string | undefined {
  if (text === DEDENT) return 'the end of the block';
  if (text === '"_" or a letter' || text === 'a letter' || text === '_') return 'a name';
  if (text === 'a digit') return 'a number';
  if (text === 'end of input') return 'the end of the file';
  if (/^not /.test(text)) return undefined;
  if (text === '$') return "a metavariable ('$name')";
  if (text === '"') return 'a quoted string';
  return quote(text);
}

function quote(t: string): string {
  return `'${t}'`;
}

function orList(items: string[]): string {
  return items.length <= 1 ? items.join('') : `${items.slice(0, -1).join(', ')} or ${items[items.length - 1]}`;
}
