// Parsed rule files kept on disk between runs. Parsing the rule library with ohm (building the
// semantics, then matching every file) costs most of a second on every start; the parsed form, as
// JSON, loads in a few milliseconds. An entry is keyed by the rule text and by the version of
// everything that turns text into rules (both grammars and the code of their semantics), so an
// edited rule, grammar or parser never reads a stale entry: it parses again. Only what parsed is
// stored, and only when JSON gives it back exactly; validation still runs on every load, so the
// registries a rule is checked against are always the current ones. The cache is an optimisation
// only: a directory that cannot be read or written is the same as an empty one.
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import { writeAtomically } from '../atomic-write.js';
import { grammarPath } from '../dsl/grammars.js';
import type { Rule } from './rule-ir.js';

/** A rule as parsed, before its file is attached. */
export type ParsedRule = Omit<Rule, 'file'>;

/** Bump when the stored shape changes without any of the hashed sources changing. */
const FORMAT = 'adopt-rule-cache 1';

/** The cache directory: $ADOPT_RULE_CACHE, else $XDG_CACHE_HOME/adopt/rules or ~/.cache/adopt/rules. */
export function ruleCacheDir(): string {
  if (process.env.ADOPT_RULE_CACHE) return process.env.ADOPT_RULE_CACHE;
  return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'adopt', 'rules');
}

// The sources that decide what a rule text parses to: the grammars, and the modules holding the
// semantics, read beside this module (compiled, or their TypeScript where the sources run as such).
const PARSER_SOURCES = [
  () => grammarPath('dsl.ohm'),
  () => grammarPath('rules.ohm'),
  () => fileURLToPath(new URL('./rule-parse.js', import.meta.url)),
  () => fileURLToPath(new URL('./rule-ir.js', import.meta.url)),
  () => fileURLToPath(new URL('../dsl/parse.js', import.meta.url)),
];

function readSourceFile(path: string): Buffer {
  try { return readFileSync(path); } catch (e) {
    if (path.endsWith('.js')) return readFileSync(path.replace(/\.js$/, '.ts'));
    throw e;
  }
}

let parserVersion: string | null | undefined;
/** The hash of the parser's sources; null (no caching) when one of them cannot be read. */
function version(): string | null {
  if (parserVersion === undefined) {
    try {
      const h = createHash('sha256').update(FORMAT);
      for (const source of PARSER_SOURCES) h.update('\0').update(readSourceFile(source()));
      parserVersion = h.digest('hex');
    } catch {
      parserVersion = null;
    }
  }
  return parserVersion;
}

/** Where the parse of `text` is stored; undefined when the parser's version cannot be known. */
export function ruleCachePath(text: string): string | undefined {
  const v = version();
  return v === null ? undefined : join(ruleCacheDir(), `${createHash('sha256').update(v).update('\0').update(text).digest('hex')}.json`);
}

/** The stored parse of `text`, or undefined when there is none (or it cannot be read). */
export function cachedParse(text: string): ParsedRule[] | undefined {
  const path = ruleCachePath(text);
  if (!path) return undefined;
  let stored: string;
  try { stored = readFileSync(path, 'utf8'); } catch { return undefined; }
  try {
    const rules = JSON.parse(stored) as unknown;
    return Array.isArray(rules) ? (rules as ParsedRule[]) : undefined;
  } catch {
    return undefined;
  }
}

/** Stores the parse of `text`, when JSON gives it back exactly. Written to a temporary file and
 *  renamed into place, so a reader never sees half an entry; a failed write is ignored. */
export function storeParse(text: string, rules: ParsedRule[]): void {
  const path = ruleCachePath(text);
  if (!path) return;
  const json = JSON.stringify(rules);
  if (!isDeepStrictEqual(JSON.parse(json), rules)) return;
  try {
    mkdirSync(ruleCacheDir(), { recursive: true });
    writeAtomically(path, json);
  } catch { /* a cache that cannot be written is an empty one: the rules parse again next time */ }
}
