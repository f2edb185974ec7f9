// bench:explain — `adopt explain` over the 199 HF modeling files: every file analysed without a
// crash, per-file counts, and the CPU time of `explain --json` as a multiple of tree-sitter's
// parse-only time of the same files (the floor), both measured in this run.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { devNull } from 'node:os';
import type { FileIR, Stmt } from '../dsl/ir.js';
import { analyse } from '../pipeline/index.js';
import { programJsonChunks } from '../dsl/print.js';
import { writePieces } from '../atomic-write.js';
import { ensureTransformers, hf199Files } from './corpus.js';
import { round } from './format.js';
import { measure, parseFloor, ratioLine, ratioSummary } from './parse-floor.js';

interface FileRow {
  model: string; modules: number; ops: number; resolved: number; unresolved: number;
  inlined_ops: number; diagnostics: string[]; unresolved_examples: string[];
}

function countOps(stmts: Stmt[], acc: { ops: number; resolved: number; unresolved: number; inlined: number; unknown: Map<string, number> }): void {
  for (const s of stmts) {
    if (s.k === 'op') {
      acc.ops++;
      if (s.via) acc.inlined++;
      if (s.kind === 'unknown') { acc.unresolved++; acc.unknown.set(s.callee, (acc.unknown.get(s.callee) ?? 0) + 1); }
      else acc.resolved++;
    } else if (s.k === 'if') { countOps(s.then, acc); countOps(s.else, acc); }
    else if (s.k === 'for') countOps(s.body, acc);
  }
}

function row(model: string, f: FileIR): FileRow {
  const acc = { ops: 0, resolved: 0, unresolved: 0, inlined: 0, unknown: new Map<string, number>() };
  for (const m of f.modules) for (const meth of m.methods) countOps(meth.body, acc);
  for (const fn of f.functions) countOps(fn.body, acc);
  return {
    model, modules: f.modules.length, ops: acc.ops, resolved: acc.resolved, unresolved: acc.unresolved, inlined_ops: acc.inlined,
    diagnostics: f.diagnostics.filter((d) => d.severity !== 'note').map((d) => `${d.file}:${d.line}:${d.col}: ${d.severity}: ${d.message}`),
    unresolved_examples: [...acc.unknown].sort((a, b) => b[1] - a[1]).slice(0, 5).map(([c, n]) => `${c} x${n}`),
  };
}

async function main(): Promise<void> {
  const pkg = ensureTransformers();
  const files = hf199Files(pkg);

  // One run: the floor (read + tree-sitter parse), then what `adopt explain --json` computes.
  const floor = parseFloor(files.map((f) => f.file));
  const rows: FileRow[] = [];
  let failed = 0;
  const { value: program, cost } = measure(() => {
    const program = analyse(files.map((f) => f.file), { root: pkg });
    // written as `explain --json -o FILE` writes it, piece by piece
    writePieces(devNull, programJsonChunks(program));
    return program;
  });
  program.files.forEach((f, i) => {
    const r = row(files[i].model, f);
    if (f.diagnostics.some((d) => d.severity === 'error' && d.code !== 'syntax')) failed++;
    rows.push(r);
  });

  const total = rows.reduce((a, r) => ({ modules: a.modules + r.modules, ops: a.ops + r.ops, resolved: a.resolved + r.resolved, unresolved: a.unresolved + r.unresolved }), { modules: 0, ops: 0, resolved: 0, unresolved: 0 });
  const incomplete = rows.filter((r) => r.diagnostics.length > 0);
  console.log('model                               modules    ops  resolved  unresolved  notes');
  for (const r of rows) {
    console.log(`${r.model.padEnd(36)}${String(r.modules).padStart(7)}${String(r.ops).padStart(7)}${String(r.resolved).padStart(10)}${String(r.unresolved).padStart(12)}  ${r.diagnostics.length ? `${r.diagnostics.length} diagnostic(s)` : ''}`);
  }
  console.log('');
  for (const r of incomplete) for (const d of r.diagnostics) console.log(`  ${r.model}: ${d}`);
  const summary = {
    files: rows.length, failed, incomplete: incomplete.length, ...ratioSummary(cost, floor), ...total, resolved_ratio: round(total.resolved / Math.max(1, total.resolved + total.unresolved)),
  };
  mkdirSync('bench-results', { recursive: true });
  writeFileSync(join('bench-results', 'explain.json'), JSON.stringify({ summary, files: rows }, null, 1));
  console.log(`\nfiles ${summary.files}, failed ${failed}, ${incomplete.length} with diagnostics; per-file rows in bench-results/explain.json`);
  console.log(ratioLine('explain --json', cost, floor));
  console.log(JSON.stringify(summary));
}


await main();
