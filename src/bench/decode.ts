// bench:decode — generation one token at a time (a key/value cache): GPT-2 and a LLaMA-style
// decoder, original against their rewrite with the kernels' CPU size floors and against the same
// rewrite with every call compiled, side by side in one process (native/adopt_harness/decode_bench.py).
// Options after `--` go to the harness: --models, --batch, --prompt, --tokens, --repeats, --threads,
// --keep-freed-memory, --quiet-blas-threads.
import { join, resolve } from 'node:path';
import { ensurePythonDeps, ensureTransformers } from './corpus.js';
import { runPipeline, writeMirror } from '../pipeline/index.js';
import { streamPython } from '../verify/python.js';

const OUT = resolve('bench-results', 'decode');
const MODULES = ['gpt2', 'llama'];

async function main(): Promise<void> {
  const pkg = ensureTransformers();
  const run = runPipeline(MODULES.map((m) => join(pkg, 'models', m, `modeling_${m}.py`)), { root: pkg });
  const { mirror, changed } = writeMirror(pkg, run.files, OUT);
  if (changed.length !== MODULES.length) throw new Error(`the rewrite changed ${changed.length} of the ${MODULES.length} modeling files; nothing to compare`);
  const deps = ensurePythonDeps();
  const ended = await streamPython(['-m', 'adopt_harness.decode_bench', join(mirror, 'models'), ...process.argv.slice(2)], {
    pythonPath: [deps], stderr: 'inherit', timeoutMs: 3_600_000, onLine: (line) => console.log(line),
  });
  if (ended.error || ended.code !== 0) throw new Error(`bench:decode: ${ended.error ?? `the harness exited with ${ended.code ?? ended.signal}`}`);
}

main().catch((e: Error) => { process.stderr.write(`${e.message}\n`); process.exit(1); });
