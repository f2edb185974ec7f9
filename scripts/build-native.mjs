#!/usr/bin/env node
// Builds the native syntax-tree walk (src/parse/native/flat_tree.c) into build/native/, linked
// with tree-sitter's C runtime from the tree-sitter package; the Python grammar itself comes
// from tree-sitter-python's prebuilt binding at run time. Run by `npm run build` (and so by
// `npm install` and `npm start` in a checkout) and as the package's install script (an installed
// package has no `prepare`: this script and the C source are in its files). The output is kept
// while its inputs are unchanged. Without a C compiler or Node's headers it prints one note and
// exits 0: adopt then copies the tree through tree-sitter's cursor (slower, same result) and says
// so where it runs; so does a compiler that fails, after its messages.
//
//   node scripts/build-native.mjs [--force]
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { delimiter, dirname, join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const require = createRequire(join(root, 'package.json'));
const source = join(root, 'src/parse/native/flat_tree.c');
const outDir = join(root, 'build/native');
const output = join(outDir, 'flat_tree.node');
const stamp = join(outDir, 'flat_tree.stamp');

function note(message) {
  process.stderr.write(`adopt build: note: ${message}; adopt will copy syntax trees through tree-sitter's cursor instead (slower, same results)\n`);
}

/** The first compiler on PATH (CC first when set). */
function compiler() {
  const names = [process.env.CC, 'cc', 'gcc', 'clang'].filter(Boolean);
  for (const name of names) {
    if (name.includes('/')) { if (existsSync(name)) return name; continue; }
    for (const dir of (process.env.PATH ?? '').split(delimiter)) if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  return undefined;
}

/** Node's C headers: beside this node binary (official builds) or the system's. */
function nodeHeaders() {
  const candidates = [join(dirname(process.execPath), '..', 'include', 'node'), '/usr/include/node', '/usr/local/include/node'];
  return candidates.find((dir) => existsSync(join(dir, 'node_api.h')));
}

function treeSitterLib() {
  const lib = join(dirname(require.resolve('tree-sitter/package.json')), 'vendor', 'tree-sitter', 'lib');
  return existsSync(join(lib, 'src', 'lib.c')) ? lib : undefined;
}

function main() {
  const cc = compiler();
  const headers = nodeHeaders();
  const lib = treeSitterLib();
  if (!existsSync(source)) return note(`the addon's source ${source} is missing`), 0;
  if (!cc) return note('no C compiler found (cc, gcc or clang on PATH, or CC)'), 0;
  if (!headers) return note("Node's C headers (node_api.h) not found"), 0;
  if (!lib) return note("tree-sitter's C runtime (vendor/tree-sitter/lib) not found in node_modules"), 0;
  const args = ['-O2', '-std=gnu11', '-fPIC', '-shared', '-fvisibility=hidden', '-DNODE_GYP_MODULE_NAME=flat_tree',
    `-I${headers}`, `-I${join(lib, 'include')}`, `-I${join(lib, 'src')}`, `-I${join(lib, 'src', 'wasm')}`,
    source, join(lib, 'src', 'lib.c')];
  const key = createHash('sha256').update(JSON.stringify([cc, args])).update(readFileSync(source))
    .update(readFileSync(join(dirname(lib), '..', '..', 'package.json'))).digest('hex');
  if (!process.argv.includes('--force') && existsSync(output) && existsSync(stamp) && readFileSync(stamp, 'utf8') === key) return 0;
  mkdirSync(outDir, { recursive: true });
  const partial = `${output}.${process.pid}.tmp`;
  const t0 = performance.now();
  const r = spawnSync(cc, [...args, '-o', partial], { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    rmSync(partial, { force: true });
    if (r.error) return note(`the C compiler ${cc} did not run (${r.error.message})`), 0;
    process.stderr.write(r.stderr);
    return note(`compiling ${source} failed (exit ${r.status}, messages above)`), 0;
  }
  renameSync(partial, output);
  writeFileSync(stamp, key);
  process.stderr.write(`adopt build: native syntax-tree walk built in ${((performance.now() - t0) / 1000).toFixed(1)} s (${output})\n`);
  return 0;
}

process.exit(main());
