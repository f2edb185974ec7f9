import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { analyzePaths } from '../../src/analysis/analyze.js';
import { writeOutput } from '../../src/cli/output.js';
import type { Program } from '../../src/dsl/ir.js';
import { programJsonChunks } from '../../src/dsl/print.js';
import { modelFixtures } from '../helpers/fixtures.js';

const joined = (p: Program) => [...programJsonChunks(p)].join('');

describe('explain --json in pieces', () => {
  const { program } = analyzePaths(modelFixtures());

  it('the pieces join to JSON.stringify of the whole program, one piece a file', () => {
    expect(program.files.length).toBeGreaterThan(1);
    expect(joined(program)).toBe(`${JSON.stringify(program)}\n`);
    expect([...programJsonChunks(program)].length).toBeGreaterThan(program.files.length);
  });

  it('keeps key order and drops undefined values as JSON.stringify does; a reordered program reads differently', () => {
    const reordered = { files: program.files, root: program.root, version: program.version } as unknown as Program;
    expect(joined(reordered)).toBe(`${JSON.stringify(reordered)}\n`);
    expect(joined(reordered)).not.toBe(joined(program));
    const sparse = { ...program, note: undefined } as unknown as Program;
    expect(joined(sparse)).toBe(joined(program));
    const empty = { ...program, files: [] } as Program;
    expect(joined(empty)).toBe(`${JSON.stringify(empty)}\n`);
  });

  it('writeOutput writes the pieces to a file whole', () => {
    const dir = mkdtempSync(join(tmpdir(), 'adopt-json-'));
    try {
      const out = join(dir, 'program.json');
      writeOutput(out, programJsonChunks(program));
      expect(readFileSync(out, 'utf8')).toBe(`${JSON.stringify(program)}\n`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
