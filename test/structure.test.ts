// scripts/check-structure.mjs: file and function sizes and import cycles, on a small tree made to
// break each limit once (and on its corrected copy), then on this repository's own sources.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDirs } from './helpers/ir.js';

const repo = resolve(__dirname, '..');
const script = join(repo, 'scripts', 'check-structure.mjs');

function check(args: string[], cwd = repo) {
  const r = spawnSync(process.execPath, [script, ...args], { cwd, encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

const lines = (n: number, make: (i: number) => string) => Array.from({ length: n }, (_, i) => make(i)).join('\n') + '\n';

/** a.ts and b.ts import each other; long.ts has a 130-line function; big.ts has 610 lines;
 *  table.ts has a long function marked as a table; ok.ts is within every limit. */
function badTree(): string {
  const dir = mkdtempSync(join(tmpdir(), 'adopt-structure-'));
  tempDirs.push(dir);
  mkdirSync(join(dir, 'src', 'sub'), { recursive: true });
  writeFileSync(join(dir, 'src', 'a.ts'), "import { b } from './sub/b.js';\nexport const a = () => b;\n");
  writeFileSync(join(dir, 'src', 'sub', 'b.ts'), "import { a } from '../a.js';\nexport function b() { return a; }\n");
  writeFileSync(join(dir, 'src', 'long.ts'), `export class K {\n  run(): number {\n    let x = 0;\n${lines(126, () => '    x++;')}    return x;\n  }\n}\n`);
  writeFileSync(join(dir, 'src', 'big.ts'), lines(610, (i) => `export const v${i} = ${i};`));
  writeFileSync(join(dir, 'src', 'table.ts'), `// check-structure: table\nexport function semantics() {\n  return {\n${lines(125, (i) => `    k${i}: ${i},`)}  };\n}\n`);
  writeFileSync(join(dir, 'src', 'ok.ts'), `export function fine() {\n${lines(100, () => '  void 0;')}}\n`);
  return dir;
}

describe('check-structure', () => {
  it('reports a long file, a long function and an import cycle with file:line, and exits 1', () => {
    const dir = badTree();
    const r = check(['--root', 'src'], dir);
    expect(r.code).toBe(1);
    expect(r.out).toContain('src/big.ts:1: file has 610 lines (limit 600)');
    expect(r.out).toContain('src/long.ts:2: function run has 130 lines (limit 120)');
    expect(r.out).toMatch(/src\/a\.ts:1: import cycle: src\/a\.ts -> src\/sub\/b\.ts -> src\/a\.ts\n/);
    expect(r.out).not.toContain('ok.ts');
    expect(r.out).not.toContain('semantics');
    expect(r.out).toContain('3 problem(s)');
  });

  it('passes the same tree once the limits hold, and limits sizes to --sizes', () => {
    const dir = badTree();
    writeFileSync(join(dir, 'src', 'sub', 'b.ts'), 'export function b() { return 1; }\n');
    const sized = check(['--root', 'src', '--sizes', 'src/ok.ts,src/sub'], dir);
    expect(sized.out).toBe('check-structure: 6 files under src (sizes held under src/ok.ts, src/sub): ok\n');
    expect(sized.code).toBe(0);
    const all = check(['--root', 'src'], dir);
    expect(all.code).toBe(1);
    expect(all.out).not.toContain('import cycle');
  });

  it('names a type-only edge of a cycle, which still counts', () => {
    const dir = badTree();
    writeFileSync(join(dir, 'src', 'sub', 'b.ts'), "import type { A } from '../a.js';\nexport type B = A;\nexport function b() { return 1; }\n");
    writeFileSync(join(dir, 'src', 'a.ts'), "import { b } from './sub/b.js';\nexport type A = number;\nexport const a = () => b;\n");
    const r = check(['--root', 'src', '--sizes', 'src/ok.ts'], dir);
    expect(r.code).toBe(1);
    expect(r.out).toContain('import cycle: src/a.ts -> src/sub/b.ts -> src/a.ts (src/sub/b.ts:1 imports only types)');
  });

  it('refuses a missing root or an unknown argument with exit 2', () => {
    expect(check(['--root', 'no-such-dir']).code).toBe(2);
    const r = check(['--frobnicate']);
    expect(r.code).toBe(2);
    expect(r.err).toContain("unknown argument '--frobnicate'");
  });

  it('src: every file and function within the size limits, no import cycle', () => {
    const r = check(['--root', 'src']);
    expect(r.out).toMatch(/check-structure: \d+ files under src.*: ok\n$/);
    expect(r.code).toBe(0);
  });
});
