// The torch names the rule checker knows (grammar/torch-names.json) hold every name of the torch
// the numerical checks run with: a name missing there would be taken for a misspelling.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { TORCH_NAMES_PATH, torchNames } from '../src/match/callee-names.js';
import { runPython } from '../src/verify/python.js';
import { repoRoot } from './helpers/cli.js';

describe('grammar/torch-names.json', () => {
  it('has every name of the installed torch (regenerate: python3 scripts/torch-names.py)', (ctx) => {
    const r = runPython([join(repoRoot, 'scripts/torch-names.py'), '--print'], { timeoutMs: 120_000 });
    // without Python or torch there is nothing to compare with
    if (!r.ok || r.status !== 0) { ctx.skip(); return; }
    const installed = JSON.parse(r.stdout.trim().split('\n').pop()!) as ReturnType<typeof torchNames>;
    const shipped = torchNames();
    expect(shipped.torch, TORCH_NAMES_PATH).toEqual(expect.arrayContaining(installed.torch));
    for (const [ns, names] of Object.entries(installed.functions)) expect(names.filter((n) => !shipped.functions[ns].includes(n)), ns).toEqual([]);
    for (const [ns, names] of Object.entries(installed.modules)) expect(names.filter((n) => !shipped.modules[ns].includes(n)), ns).toEqual([]);
  });
});
