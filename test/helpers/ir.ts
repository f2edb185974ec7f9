import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Method, ModuleIR, Op, Program, Stmt } from '../../src/dsl/ir.js';

export function moduleOf(p: Program, name: string): ModuleIR {
  for (const f of p.files) for (const m of f.modules) if (m.name === name) return m;
  throw new Error(`no module ${name} in ${p.files.map((f) => f.modules.map((m) => m.name).join(',')).join(';')}`);
}

export function methodOf(m: ModuleIR, name = 'forward'): Method {
  const fn = m.methods.find((x) => x.name === name);
  if (!fn) throw new Error(`no method ${name} in ${m.name}`);
  return fn;
}

/** Every op of a body, in order, through branches and loops. */
export function opsOf(body: Stmt[]): Op[] {
  const out: Op[] = [];
  const walk = (ss: Stmt[]) => {
    for (const s of ss) {
      if (s.k === 'op') out.push(s);
      else if (s.k === 'if') { walk(s.then); walk(s.else); }
      else if (s.k === 'for') walk(s.body);
    }
  };
  walk(body);
  return out;
}

/** Directories made by tempProject in this test file; test/helpers/cleanup.ts removes them. */
export const tempDirs: string[] = [];

/** Writes a throwaway project: { 'pkg/a.py': '...' } → its directory. */
export function tempProject(files: Record<string, string | Buffer>): string {
  const dir = mkdtempSync(join(tmpdir(), 'adopt-test-'));
  tempDirs.push(dir);
  for (const [rel, content] of Object.entries(files)) {
    const p = join(dir, rel);
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, content);
  }
  return dir;
}
