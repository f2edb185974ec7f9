#!/usr/bin/env node
// Structure check for the TypeScript sources: files over 600 lines, functions over 120 lines and
// import cycles, each reported as file:line. Exits 1 when it finds any, 2 on bad usage.
//
//   node scripts/check-structure.mjs [--root src] [--sizes <path>,<path>...]
//
// --root: the tree whose *.ts files are read (cycles are looked for across all of it).
// --sizes: only files under these paths are held to the size limits (default: all of the root).
// A function whose leading comment says `check-structure: table` is a data table (grammar
// semantics) and is exempt from the function limit; it is still counted and listed with -v.
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';

const require = createRequire(import.meta.url);
const ts = require('typescript');

export const LIMITS = { fileLines: 600, functionLines: 120 };
const TABLE_MARK = 'check-structure: table';

function usage(message) {
  process.stderr.write(`check-structure: ${message}\nusage: node scripts/check-structure.mjs [--root DIR] [--sizes PATH,PATH...] [-v]\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { root: 'src', sizes: undefined, verbose: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--root' || a === '--sizes') {
      const v = argv[++i];
      if (v === undefined || v.startsWith('-')) usage(`${a} needs a value`);
      if (a === '--root') opts.root = v; else opts.sizes = v.split(',').filter(Boolean);
    } else if (a === '-v' || a === '--verbose') opts.verbose = true;
    else usage(`unknown argument '${a}'`);
  }
  return opts;
}

function tsFiles(dir) {
  const out = [];
  for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const p = join(dir, e.name);
    if (e.isDirectory()) { if (e.name !== 'node_modules' && !e.name.startsWith('.')) out.push(...tsFiles(p)); }
    else if (e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/** Lines as `wc -l` counts them, plus one for a last line without a newline. */
function lineCount(text) {
  let n = 0;
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) n++;
  return text.length && !text.endsWith('\n') ? n + 1 : n;
}

function functionName(node, sf) {
  if (node.name) return node.name.getText(sf);
  const p = node.parent;
  if (p && (ts.isVariableDeclaration(p) || ts.isPropertyDeclaration(p) || ts.isPropertyAssignment(p)) && p.name) return p.name.getText(sf);
  if (ts.isConstructorDeclaration(node)) return 'constructor';
  return '<anonymous>';
}

function isTable(node, sf) {
  const holder = ts.isArrowFunction(node) || ts.isFunctionExpression(node) ? node.parent?.parent ?? node : node;
  const text = sf.getFullText();
  const comments = ts.getLeadingCommentRanges(text, holder.getFullStart()) ?? [];
  return comments.some((c) => text.slice(c.pos, c.end).includes(TABLE_MARK));
}

/** Every function-like node with a body: its name, first line and length in lines. */
function functionsOf(sf) {
  const out = [];
  const visit = (node) => {
    if (ts.isFunctionLike(node) && node.body) {
      const start = sf.getLineAndCharacterOfPosition(node.getStart(sf)).line;
      const end = sf.getLineAndCharacterOfPosition(node.getEnd()).line;
      out.push({ name: functionName(node, sf), line: start + 1, lines: end - start + 1, table: isTable(node, sf) });
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return out;
}

/** Relative module specifiers of static imports, re-exports and `import('...')` calls. */
function importsOf(sf) {
  const out = [];
  const add = (spec, node, typeOnly) => {
    if (spec && ts.isStringLiteral(spec) && spec.text.startsWith('.')) out.push({ spec: spec.text, line: sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1, typeOnly });
  };
  const visit = (node) => {
    if (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) add(node.moduleSpecifier, node, typeOnly(node));
    else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) add(node.arguments[0], node, false);
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return out;
}

/** `import type`, `export type`, or named bindings that are all `type`: erased when compiled. */
function typeOnly(node) {
  if (ts.isExportDeclaration(node)) return node.isTypeOnly || (!!node.exportClause && ts.isNamedExports(node.exportClause) && node.exportClause.elements.every((e) => e.isTypeOnly));
  const clause = node.importClause;
  if (!clause) return false;
  if (clause.isTypeOnly) return true;
  const named = clause.namedBindings;
  return !clause.name && !!named && ts.isNamedImports(named) && named.elements.length > 0 && named.elements.every((e) => e.isTypeOnly);
}

function resolveImport(from, spec) {
  const base = resolve(dirname(from), spec);
  const candidates = [base.replace(/\.(m?js)$/, '.ts'), base, `${base}.ts`, join(base, 'index.ts')];
  return candidates.find((c) => c.endsWith('.ts') && existsSync(c) && statSync(c).isFile());
}

/** Strongly connected components of more than one file (or a file importing itself), each as
 *  one concrete cycle of import edges. Tarjan's algorithm, iterative. */
function cycles(graph) {
  let index = 0;
  const idx = new Map(), low = new Map(), onStack = new Set(), stack = [], comps = [];
  for (const root of graph.keys()) {
    if (idx.has(root)) continue;
    const work = [[root, 0]];
    idx.set(root, index); low.set(root, index); index++; stack.push(root); onStack.add(root);
    while (work.length) {
      const top = work[work.length - 1];
      const [v, i] = top;
      const edges = graph.get(v) ?? [];
      if (i < edges.length) {
        top[1]++;
        const w = edges[i].to;
        if (!idx.has(w)) { idx.set(w, index); low.set(w, index); index++; stack.push(w); onStack.add(w); work.push([w, 0]); }
        else if (onStack.has(w)) low.set(v, Math.min(low.get(v), idx.get(w)));
        continue;
      }
      work.pop();
      if (work.length) { const u = work[work.length - 1][0]; low.set(u, Math.min(low.get(u), low.get(v))); }
      if (low.get(v) === idx.get(v)) {
        const comp = [];
        let w;
        do { w = stack.pop(); onStack.delete(w); comp.push(w); } while (w !== v);
        const selfLoop = (graph.get(v) ?? []).some((e) => e.to === v);
        if (comp.length > 1 || selfLoop) comps.push(comp);
      }
    }
  }
  return comps.map((comp) => cycleIn(graph, new Set(comp)));
}

/** A shortest cycle through the component's first file (sorted), as edges. */
function cycleIn(graph, members) {
  const start = [...members].sort()[0];
  const prev = new Map([[start, null]]);
  const queue = [start];
  while (queue.length) {
    const v = queue.shift();
    for (const e of graph.get(v) ?? []) {
      if (!members.has(e.to)) continue;
      if (e.to === start) {
        const path = [e];
        for (let p = prev.get(v); p; p = prev.get(p.from)) path.unshift(p);
        return path;
      }
      if (!prev.has(e.to)) { prev.set(e.to, e); queue.push(e.to); }
    }
  }
  return [];
}

export function checkStructure({ root, sizes }) {
  const absRoot = resolve(root);
  if (!existsSync(absRoot) || !statSync(absRoot).isDirectory()) return { error: `${root}: no such directory` };
  const held = sizes?.map((p) => resolve(p));
  for (const [i, p] of (held ?? []).entries()) if (!existsSync(p)) return { error: `--sizes ${sizes[i]}: no such file or directory` };
  const inScope = (f) => !held || held.some((p) => f === p || f.startsWith(p + '/'));
  const show = (f) => relative(process.cwd(), f) || f;
  const problems = [];
  const tables = [];
  const graph = new Map();
  const files = tsFiles(absRoot);
  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
    graph.set(file, importsOf(sf).map(({ spec, line, typeOnly }) => ({ from: file, to: resolveImport(file, spec), line, typeOnly })).filter((e) => e.to));
    if (!inScope(file)) continue;
    const n = lineCount(text);
    if (n > LIMITS.fileLines) problems.push(`${show(file)}:1: file has ${n} lines (limit ${LIMITS.fileLines})`);
    for (const f of functionsOf(sf)) {
      if (f.lines <= LIMITS.functionLines) continue;
      if (f.table) tables.push(`${show(file)}:${f.line}: ${f.name} has ${f.lines} lines (a table, exempt)`);
      else problems.push(`${show(file)}:${f.line}: function ${f.name} has ${f.lines} lines (limit ${LIMITS.functionLines})`);
    }
  }
  for (const path of cycles(graph)) {
    const first = path[0];
    // A cycle through a type-only import does not run, but still ties the stages together.
    const typeEdge = path.find((e) => e.typeOnly);
    const note = typeEdge ? ` (${show(typeEdge.from)}:${typeEdge.line} imports only types)` : '';
    problems.push(`${show(first.from)}:${first.line}: import cycle: ${[...path.map((e) => show(e.from)), show(first.from)].join(' -> ')}${note}`);
  }
  return { files: files.length, problems, tables };
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(new URL(import.meta.url).pathname)) {
  const opts = parseArgs(process.argv.slice(2));
  const r = checkStructure(opts);
  if (r.error) usage(r.error);
  for (const p of r.problems) process.stdout.write(`${p}\n`);
  if (opts.verbose) for (const t of r.tables) process.stdout.write(`${t}\n`);
  process.stdout.write(`check-structure: ${r.files} files under ${opts.root}${opts.sizes ? ` (sizes held under ${opts.sizes.join(', ')})` : ''}: ${r.problems.length ? `${r.problems.length} problem(s)` : 'ok'}\n`);
  process.exit(r.problems.length ? 1 : 0);
}
