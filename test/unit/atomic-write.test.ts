// Writes through a temporary file and one rename: the shared helper, and each caller's own policy
// for a write that fails (an error for the user, a message, or nothing for a cache), never with a
// temporary file left behind.
import { mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { commit, discard, stage, tempBeside, writeAtomically } from '../../src/atomic-write.js';
import { writeOutput } from '../../src/cli/output.js';
import { AdoptError } from '../../src/diag.js';
import { storeParse } from '../../src/match/rule-cache.js';
import { writeTo } from '../../src/pipeline/emit.js';
import type { FileResult } from '../../src/synth/synthesize.js';
import { tempProject } from '../helpers/ir.js';

const leftovers = (dir: string) => readdirSync(dir).filter((n) => n.endsWith('.tmp'));

describe('the atomic write', () => {
  it('replaces the target with the new text and the given mode, and leaves nothing beside it', () => {
    const dir = tempProject({ 'a.txt': 'old' });
    const target = join(dir, 'a.txt');
    writeAtomically(target, 'new', 0o640);
    expect(readFileSync(target, 'utf8')).toBe('new');
    expect(statSync(target).mode & 0o777).toBe(0o640);
    expect(leftovers(dir)).toEqual([]);
  });

  it('keeps the target until the commit, and a discarded stage leaves it as it was', () => {
    const dir = tempProject({ 'a.txt': 'old' });
    const target = join(dir, 'a.txt');
    const tmp = stage(target, 'new');
    expect(tmp).toBe(tempBeside(target));
    expect(readFileSync(target, 'utf8')).toBe('old');
    discard(tmp);
    expect(readFileSync(target, 'utf8')).toBe('old');
    expect(leftovers(dir)).toEqual([]);
    commit(stage(target, 'newer'), target);
    expect(readFileSync(target, 'utf8')).toBe('newer');
  });

  it('throws where the rename fails (the target is a directory), with the temporary file removed', () => {
    const dir = tempProject({ 'keep.txt': 'x' });
    mkdirSync(join(dir, 'sub'));
    writeFileSync(join(dir, 'sub', 'inside'), 'x');
    expect(() => writeAtomically(join(dir, 'sub'), 'new')).toThrow();
    expect(leftovers(dir)).toEqual([]);
  });

  it('throws where the temporary file cannot be written (no such directory)', () => {
    const dir = tempProject({ 'keep.txt': 'x' });
    expect(() => writeAtomically(join(dir, 'missing', 'a.txt'), 'new')).toThrow(/ENOENT/);
    expect(leftovers(dir)).toEqual([]);
  });
});

describe('each caller\'s policy for a failed write', () => {
  const saved = process.env.ADOPT_RULE_CACHE;
  afterEach(() => { if (saved === undefined) delete process.env.ADOPT_RULE_CACHE; else process.env.ADOPT_RULE_CACHE = saved; });

  it('-o FILE: an error for the user naming the file, and no temporary file', () => {
    const dir = tempProject({ 'keep.txt': 'x' });
    mkdirSync(join(dir, 'out'));
    writeFileSync(join(dir, 'out', 'inside'), 'x');
    expect(() => writeOutput(join(dir, 'out'), 'text')).toThrow(AdoptError);
    expect(() => writeOutput(join(dir, 'out'), 'text')).toThrow(/cannot write .*out/);
    expect(leftovers(dir)).toEqual([]);
  });

  it('rewrite -o: a message per file that could not be written, the others written', () => {
    const dir = tempProject({ 'a.py': 'x = 1\n', 'b.py': 'y = 1\n' });
    const out = join(dir, 'out');
    mkdirSync(join(out, 'a.py'), { recursive: true });
    writeFileSync(join(out, 'a.py', 'inside'), 'x');
    const file = (name: string): FileResult => ({ path: join(dir, name), original: '', rewritten: `# ${name}\n` } as FileResult);
    const r = writeTo(out, [file('a.py'), file('b.py')], [join(dir, 'a.py'), join(dir, 'b.py')]);
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]).toMatch(/cannot write .*a\.py/);
    expect(r.written.map((f) => f.path)).toEqual([join(dir, 'b.py')]);
    expect(readFileSync(join(out, 'b.py'), 'utf8')).toBe('# b.py\n');
    expect(leftovers(out)).toEqual([]);
  });

  it('the rule cache: a failed store is no error and leaves nothing', () => {
    const dir = tempProject({ 'cache': 'a file where the cache directory should be' });
    process.env.ADOPT_RULE_CACHE = join(dir, 'cache');
    expect(() => storeParse('rule r\n', [])).not.toThrow();
    expect(leftovers(dir)).toEqual([]);
  });
});
