// The callees a rule's pattern may name, and the warnings for those that look misspelt. A pattern
// line whose callee names nothing the analysis produces loads and simply never matches, so a typo
// (`sofmax`, `Lienar`) would go unnoticed. The names the analysis produces come from where it
// makes them: the canonical vocabulary of src/analysis/canon.ts, and the members of torch's
// namespaces, which the analysis takes whatever they are and which are therefore read from torch
// itself (grammar/torch-names.json, made by scripts/torch-names.py). A name that is not one of
// them may still be the user's own (a project's class, a factory's name), so nothing here is an
// error: a name close to a known one is a warning with the known name as the suggestion, and a
// spelling the analysis rewrites before matching (`bmm`, `torch.softmax`) is a warning saying
// what to write.
import { readFileSync } from 'node:fs';
import {
  ALIASES, BINARY_OPS, BUILTINS, CAST_METHODS, COMPARE_OPS, KW_RENAMES, OP_NAMESPACES, POSITIONAL_TO_KW, TENSOR_METHODS, UNARY_OPS, canonicalName,
} from '../analysis/canon.js';
import { grammarPath } from '../dsl/grammars.js';
import type { Diagnostic } from '../diag.js';
import type { Op } from '../dsl/ir.js';
import { ruleDiagnostic, type PatOp, type Rule } from './rule-ir.js';

interface TorchNames {
  format: string;
  torch: string[];
  functions: Record<string, string[]>;
  modules: Record<string, string[]>;
}

const FORMAT = 'adopt-torch-names/1';
export const TORCH_NAMES_PATH = grammarPath('torch-names.json');

/** Ops the lowering emits itself for Python syntax (src/analysis/lower*.ts): subscripts,
 *  attribute reads and writes, conditional expressions, boolean operators. */
const SYNTAX_OPS = ['getitem', 'getattr', 'setitem', 'setattr', 'ifexp', 'and', 'or', 'not', 'unary', 'compare', 'written_through_view'];

let torchCache: TorchNames | undefined;

export function torchNames(): TorchNames {
  if (torchCache) return torchCache;
  const data = JSON.parse(readFileSync(TORCH_NAMES_PATH, 'utf8')) as TorchNames;
  if (data?.format !== FORMAT || typeof data.functions !== 'object' || typeof data.modules !== 'object') {
    throw new Error(`${TORCH_NAMES_PATH}: not a list of torch names (regenerate it: python3 scripts/torch-names.py)`);
  }
  torchCache = data;
  return data;
}

/** Whether `name` is a class of torch.nn (`Linear`, `LayerNorm`), as the installed torch names them. */
export function isTorchNnClass(name: string): boolean {
  return knownNames().classes.get('torch.nn')?.has(name) ?? false;
}

export interface KnownNames {
  /** Op names as the analysis writes them, after canonicalising. */
  ops: Set<string>;
  /** Class names per namespace (`torch.nn`, `torch.optim`). */
  classes: Map<string, Set<string>>;
}

let knownCache: KnownNames | undefined;

export function knownNames(): KnownNames {
  if (knownCache) return knownCache;
  const t = torchNames();
  const ops = new Set<string>([
    ...OP_NAMESPACES.flatMap((ns) => t.functions[ns] ?? []),
    ...TENSOR_METHODS, ...BUILTINS, ...Object.values(ALIASES),
    ...Object.values(BINARY_OPS), ...Object.values(UNARY_OPS), ...Object.values(COMPARE_OPS),
    ...Object.keys(POSITIONAL_TO_KW).map((k) => k.replace(/^F\./, '')), ...Object.keys(KW_RENAMES).map((k) => k.replace(/^F\./, '')),
    ...SYNTAX_OPS, 'to',
  ].map(canonicalName));
  // what is read under another name is not produced under its own (`bmm` is `matmul`)
  for (const alias of Object.keys(ALIASES)) if (ALIASES[alias] !== alias) ops.delete(alias);
  knownCache = { ops, classes: new Map(Object.entries(t.modules).map(([ns, names]) => [ns, new Set(names)])) };
  return knownCache;
}

/** Whether the analysis can produce op `name`: a known op, or the in-place form of a tensor
 *  method (`relu_`), which it keeps as written. */
function isKnownOp(name: string, ops: Set<string>): boolean {
  return ops.has(name) || (name.endsWith('_') && TENSOR_METHODS.has(name.slice(0, -1)));
}

/** Edit distance with adjacent transpositions counted as one edit (`Lienar` is one from `Linear`). */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}

/** The known names `name` may be a misspelling of, nearest first. Case is ignored, and a name
 *  equal to a known one but for case is a different name (transformers' `Conv1D` beside torch's
 *  `Conv1d`), as is a variant of one (`T5LayerNorm`, `relu6`, `BatchNorm`): that is how projects
 *  name their own. Short names are close to too much to guess: none under four characters, one
 *  edit up to eight, two beyond. */
export function nearNames(name: string, known: Iterable<string>): string[] {
  const n = name.toLowerCase();
  const reach = n.length < 4 ? 0 : n.length <= 8 ? 1 : 2;
  if (!reach) return [];
  const near: [number, string][] = [];
  for (const k of known) {
    const l = k.toLowerCase();
    if (l === n) return [];
    if (Math.abs(l.length - n.length) > reach || variant(n, l)) continue;
    const dist = editDistance(n, l);
    if (dist <= reach) near.push([dist, k]);
  }
  return near.sort((a, b) => a[0] - b[0] || a[1].localeCompare(b[1])).slice(0, 3).map(([, k]) => k);
}

/** Whether one name extends the other the way a project names its own variant: by two or more
 *  characters, or by one that is not a letter (`relu6`); one extra letter is a typo (`matmull`). */
function variant(a: string, b: string): boolean {
  const [short, long] = a.length <= b.length ? [a, b] : [b, a];
  if (!long.includes(short)) return false;
  if (long.length - short.length !== 1) return long.length > short.length;
  const extra = long.startsWith(short) ? long[long.length - 1] : long[0];
  return !/[a-z]/.test(extra);
}

/** Namespaces a pattern may write an op's function under (the analysis's, and the usual `F`). */
const OP_PREFIXES = [...OP_NAMESPACES, 'F', 'nn.functional'];
/** Class namespaces as a pattern may write them. */
const CLASS_PREFIXES: [string, string][] = [['torch.nn', 'torch.nn'], ['nn', 'torch.nn'], ['torch.optim', 'torch.optim'], ['optim', 'torch.optim']];

const didYouMean = (near: string[]) => (near.length ? ` (did you mean ${near.join(', ')}?)` : '');

/** What is wrong with one callee alternative of a pattern line, or undefined. */
export function calleeProblem(alt: string): string | undefined {
  // globs over class names and table lookups name the user's classes and tables
  if (alt.includes('*') || alt.includes('[')) return undefined;
  const known = knownNames();
  const classes = [...known.classes.values()].flatMap((s) => [...s]);
  const dot = alt.lastIndexOf('.');
  if (dot >= 0) {
    const [prefix, last] = [alt.slice(0, dot), alt.slice(dot + 1)];
    if (OP_PREFIXES.includes(prefix) && /^[a-z_][a-z0-9_]*$/.test(last)) {
      const op = canonicalName(last);
      const near = isKnownOp(op, known.ops) ? [] : nearNames(op, known.ops);
      return `'${alt}' never matches: the analysis reads a call of ${alt} as the op ${op}, so write '${op}'${didYouMean(near)}`;
    }
    const ns = CLASS_PREFIXES.find(([p]) => p === prefix)?.[1];
    const own = ns ? known.classes.get(ns) : undefined;
    if (!own || own.has(last)) return undefined;
    const near = nearNames(last, own);
    return near.length ? `${ns} has no class '${last}'${didYouMean(near.map((n) => `${prefix}.${n}`))}` : undefined;
  }
  const unknown = `'${alt}' names no op the analysis produces nor a class of torch.nn or torch.optim`;
  if (/^[a-z_][a-z0-9_]*$/.test(alt)) {
    if (ALIASES[alt] && ALIASES[alt] !== alt) return `'${alt}' never matches: the analysis reads ${alt} as ${ALIASES[alt]}, so write '${ALIASES[alt]}'`;
    // `float(x)` is Python's own, an op of its own; `x.half()` is only ever a cast
    if (alt in CAST_METHODS && !BUILTINS.has(alt)) {
      return `'${alt}' never matches x.${alt}(): the analysis reads x.${alt}() as to(x, dtype=${CAST_METHODS[alt]}), so write 'to($x, dtype=${CAST_METHODS[alt]})'`;
    }
    if (isKnownOp(alt, known.ops)) return undefined;
    const near = nearNames(alt, known.ops);
    return near.length ? `${unknown}${didYouMean(near)}: as written it matches only a module built by a function of your own named ${alt}` : undefined;
  }
  if (classes.includes(alt)) return undefined;
  const near = nearNames(alt, classes);
  return near.length ? `${unknown}${didYouMean(near)}: as written it matches only a class of your own named ${alt}` : undefined;
}

/** The column of `alt` in the text of a pattern line, else the line's own column. */
function calleeColumn(text: string | undefined, p: PatOp, alt: string): number {
  const line = text?.split('\n')[p.line - 1];
  if (line === undefined) return p.col;
  const escaped = alt.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const m = new RegExp(`(?<![\\w.$])${escaped}(?![\\w.])`).exec(line.slice(p.col - 1));
  return m ? p.col + m.index : p.col;
}

/** Warnings for the callees of a rule's pattern that name nothing the analysis produces but are
 *  close to a name it does, or that it reads under another name; each at rule-file:line:col of the
 *  callee. `text` is the rule file's text (read from the file when not given). */
export function calleeWarnings(rule: Rule, text?: string): Diagnostic[] {
  let source = text;
  if (source === undefined) { try { source = readFileSync(rule.file, 'utf8'); } catch { source = undefined; } }
  const out: Diagnostic[] = [];
  for (const p of rule.pattern) {
    for (const alt of new Set([...p.callees, ...(p.alts ?? []).flatMap((f) => f.callees)])) {
      const problem = calleeProblem(alt);
      if (!problem) continue;
      const message = `rule ${rule.name}: pattern line '${p.name}': ${problem}`;
      out.push({ ...ruleDiagnostic(rule.file, p.line, calleeColumn(source, p, alt), message), severity: 'warning' });
    }
  }
  return out;
}

/** The module's class when it is the project's own but named like a torch.nn class the line names. */
export function namesakeOfTorch(p: PatOp, op: Op): { type: string; name: string } | undefined {
  for (const name of p.callees) {
    if (name.includes('.') || !isTorchNnClass(name)) continue;
    const type = (op.type ?? []).find((t) => t.endsWith(`.${name}`) && !t.startsWith('torch.'));
    if (type) return { type, name };
  }
  return undefined;
}
