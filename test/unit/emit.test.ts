// `-o`'s writer: outputs mirror the inputs below their deepest common directory, a directory
// input comes out whole, and an output that would leave OUT or land on an input stops the write
// before anything is on disk.
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { commonRoot, destinationsUnder, writeTo } from '../../src/pipeline/emit.js';
import type { FileResult } from '../../src/synth/synthesize.js';
import { tempProject } from '../helpers/ir.js';

const rewrite = (path: string): FileResult => ({ path, original: '', rewritten: `# rewritten ${path}\n`, edits: [] });

describe('the inputs\' common root', () => {
  it('is the deepest directory holding every input, a directory counting as itself', () => {
    const dir = tempProject({ 'a/x/m.py': '', 'a/y/n.py': '', 'b/o.py': '' });
    expect(commonRoot([join(dir, 'a/x/m.py'), join(dir, 'a/y/n.py')])).toBe(join(dir, 'a'));
    expect(commonRoot([join(dir, 'a/x/m.py'), join(dir, 'b/o.py')])).toBe(dir);
    expect(commonRoot([join(dir, 'a/x'), join(dir, 'a/x/m.py')])).toBe(join(dir, 'a/x'));
    expect(commonRoot([join(dir, 'a')])).toBe(join(dir, 'a'));
  });

  it('a sibling whose name starts like the root\'s is not inside it', () => {
    const dir = tempProject({ 'pkg/m.py': '', 'pkg2/n.py': '' });
    expect(commonRoot([join(dir, 'pkg/m.py'), join(dir, 'pkg2/n.py')])).toBe(dir);
  });

  it('places each file under OUT at its path from the root; one input file goes to OUT itself', () => {
    const dir = tempProject({ 'a/m.py': '', 'b/n.py': '' });
    const to = destinationsUnder(join(dir, 'out'), [join(dir, 'a/m.py'), join(dir, 'b/n.py')]);
    expect(to(join(dir, 'b/n.py'))).toBe(join(dir, 'out/b/n.py'));
    expect(destinationsUnder(join(dir, 'o.py'), [join(dir, 'a/m.py')])(join(dir, 'a/m.py'))).toBe(join(dir, 'o.py'));
  });
});

describe('writeTo', () => {
  it('a rewritten file outside the inputs\' root would land outside OUT: refused, nothing written', () => {
    const dir = tempProject({ 'pkg/a.py': 'a\n', 'pkg/b.py': 'b\n', 'helpers/h.py': 'h\n' });
    const out = join(dir, 'out');
    const r = writeTo(out, [rewrite(join(dir, 'pkg/a.py')), rewrite(join(dir, 'helpers/h.py'))], [join(dir, 'pkg/a.py'), join(dir, 'pkg/b.py')]);
    expect(r.written).toEqual([]);
    expect(r.errors[0]).toMatch(/helpers\/h\.py: its output .* would be outside/);
    expect(r.errors.at(-1)).toMatch(/nothing was written/);
    expect(existsSync(out)).toBe(false);
    expect(readFileSync(join(dir, 'helpers/h.py'), 'utf8')).toBe('h\n');
  });

  it('an output on an input file is refused, nothing written', () => {
    const dir = tempProject({ 'a/m.py': 'm\n', 'b/n.py': 'n\n' });
    const r = writeTo(dir, [rewrite(join(dir, 'a/m.py')), rewrite(join(dir, 'b/n.py'))], [join(dir, 'a/m.py'), join(dir, 'b/n.py')]);
    expect(r.written).toEqual([]);
    expect(r.errors.filter((e) => /is an input file/.test(e))).toHaveLength(2);
    expect(r.errors.filter((e) => /holds the input/.test(e))).toHaveLength(2);
    expect(r.errors.at(-1)).toMatch(/nothing was written/);
    expect(readFileSync(join(dir, 'a/m.py'), 'utf8')).toBe('m\n');
    expect(readFileSync(join(dir, 'b/n.py'), 'utf8')).toBe('n\n');
  });

  it('one input file and a second rewritten module both bound for the one -o file: refused', () => {
    const dir = tempProject({ 'pkg/m.py': 'm\n', 'pkg/util.py': 'u\n' });
    const r = writeTo(join(dir, 'o.py'), [rewrite(join(dir, 'pkg/m.py')), rewrite(join(dir, 'pkg/util.py'))], [join(dir, 'pkg/m.py')]);
    expect(r.errors[0]).toMatch(/util\.py was rewritten with .*m\.py, and -o names one file for both/);
    expect(existsSync(join(dir, 'o.py'))).toBe(false);
  });

  it('a directory input is copied whole, caches left out, the rewritten files written over', () => {
    const dir = tempProject({ 'pkg/__init__.py': 'init\n', 'pkg/m.py': 'm\n', 'pkg/sub/data.txt': 'd\n', 'pkg/__pycache__/m.pyc': 'x' });
    const out = join(dir, 'out');
    const r = writeTo(out, [rewrite(join(dir, 'pkg/m.py'))], [join(dir, 'pkg')]);
    expect(r.errors).toEqual([]);
    expect(r.copied?.sort()).toEqual([join(out, '__init__.py'), join(out, 'sub/data.txt')]);
    expect(readdirSync(out).sort()).toEqual(['__init__.py', 'm.py', 'sub']);
    expect(readFileSync(join(out, 'm.py'), 'utf8')).toBe(`# rewritten ${join(dir, 'pkg/m.py')}\n`);
    expect(readFileSync(join(out, 'sub/data.txt'), 'utf8')).toBe('d\n');
  });

  it('OUT inside a directory input is refused before the copy starts', () => {
    const dir = tempProject({ 'pkg/m.py': 'm\n' });
    mkdirSync(join(dir, 'pkg', 'rw'));
    writeFileSync(join(dir, 'pkg', 'rw', 'keep'), 'k');
    const r = writeTo(join(dir, 'pkg', 'rw'), [rewrite(join(dir, 'pkg/m.py'))], [join(dir, 'pkg')]);
    expect(r.errors[0]).toMatch(/is inside the input directory/);
    expect(readdirSync(join(dir, 'pkg', 'rw'))).toEqual(['keep']);
  });

  it('OUT above a directory input is refused: the copy would land over the files beside the input', () => {
    const dir = tempProject({ 'pkg/README.md': 'the package\n', 'pkg/m.py': 'm\n', 'README.md': 'the project\n' });
    const r = writeTo(dir, [rewrite(join(dir, 'pkg/m.py'))], [join(dir, 'pkg')]);
    expect(r.errors[0]).toMatch(/holds the input .*pkg: choose a directory apart from the inputs/);
    expect(readFileSync(join(dir, 'README.md'), 'utf8')).toBe('the project\n');
    expect(existsSync(join(dir, 'm.py'))).toBe(false);
  });

  it('a linked file or folder of a directory input is copied as the link', () => {
    const dir = tempProject({ 'pkg/m.py': 'm\n', 'pkg/data/a.txt': 'a\n', 'pkg/real.py': 'r\n' });
    symlinkSync('data', join(dir, 'pkg', 'linked'));
    symlinkSync('real.py', join(dir, 'pkg', 'alias.py'));
    const out = join(dir, 'out');
    const r = writeTo(out, [rewrite(join(dir, 'pkg/m.py'))], [join(dir, 'pkg')]);
    expect(r.errors).toEqual([]);
    for (const [link, target] of [['linked', 'data'], ['alias.py', 'real.py']]) {
      expect(lstatSync(join(out, link)).isSymbolicLink()).toBe(true);
      expect(readlinkSync(join(out, link))).toBe(target);
    }
    expect(readFileSync(join(out, 'linked', 'a.txt'), 'utf8')).toBe('a\n');
  });
});
