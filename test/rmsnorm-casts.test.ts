// RMSNorms that cast their normalised value to another dtype than the input's, run in torch with
// the weight and the input in different dtypes. The rmsnorm rule used to rewrite every `.to(...)`
// as the kernel's cast back to the input's dtype: `weight * h.to(self.weight.dtype)` with a bfloat16
// weight and a float32 input returned float32 where the original returns bfloat16, and with a
// float32 weight and a bfloat16 input rounded to bfloat16 first (1e-2 off); `h.to(torch.bfloat16)`
// and `h.half()` were off by 8e-3 and 9e-4. `--verify` runs one dtype for weight and input and saw
// only the last two. Now each rewritten class computes exactly what its original does, in every
// combination: bit for bit where the torch code runs, within the kernel's rounding where it runs.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runRewrite } from '../src/pipeline/index.js';
import { besideOriginal } from './helpers/beside-original.js';
import { tempProject } from './helpers/ir.js';
import { RMS_CAST_MODELS, RMS_CAST_REFUSED, RMS_REWRITTEN, RMS_TWO_DIMS } from './helpers/rmsnorm-models.js';

const CHECK = `
import os, torch
from adopt_kernels import _dispatch

orig, new = load(ORIGINAL, "orig"), load(REWRITTEN, "rewritten")
names = json.loads(ARGS[0])
f32, bf16, f16 = torch.float32, torch.bfloat16, torch.float16
PAIRS = [(f32, f32), (bf16, bf16), (f32, bf16), (bf16, f32), (f16, f32), (f32, f16)]
out = []
for mode in ("torch", "compiled"):
    # the torch formulation must be the original bit for bit; the compiled kernel rounds its own way
    os.environ["ADOPT_DISABLE"] = "native" if mode == "torch" else ""
    for name in names:
        for wdt, xdt in PAIRS:
            torch.manual_seed(0)
            a = getattr(orig, name)().to(wdt)
            b = getattr(new, name)().to(wdt)
            b.load_state_dict(a.state_dict())
            x = (torch.randn(2, 4, 32, generator=torch.Generator().manual_seed(1)) * 3).to(xdt)
            before = sum(_dispatch.CALLS.values())
            with torch.no_grad():
                ya, yb = a(x), b(x)
            out.append({"mode": mode, "name": name, "weight": str(wdt), "input": str(xdt),
                        "dtypes": [str(ya.dtype), str(yb.dtype)],
                        "diff": (ya.double() - yb.double()).abs().max().item(),
                        "scale": ya.double().abs().max().item(),
                        "compiled": sum(_dispatch.CALLS.values()) - before})
print(json.dumps(out))
`;

interface Row { mode: string; name: string; weight: string; input: string; dtypes: [string, string]; diff: number; scale: number; compiled: number }

describe('rmsnorm casts in mixed dtypes', () => {
  it('every rewritten class computes its original in each weight/input dtype pair', () => {
    const dir = tempProject({ 'm.py': RMS_CAST_MODELS });
    const run = runRewrite([join(dir, 'm.py')], {});
    const text = run.files[0].rewritten;
    expect(text).toMatch(/_adopt\.rms_norm\(/);
    writeFileSync(join(dir, 'rw.py'), text);
    const names = [...RMS_REWRITTEN, ...RMS_CAST_REFUSED, RMS_TWO_DIMS];
    const rows = besideOriginal<Row[]>(join(dir, 'm.py'), join(dir, 'rw.py'), CHECK, { args: [JSON.stringify(names)], env: { ADOPT_CPU_MIN_BYTES: '0' } });
    expect(rows.length).toBe(2 * names.length * 6);
    for (const row of rows) {
      const what = `${row.mode} ${row.name} weight ${row.weight} input ${row.input}`;
      expect(row.dtypes[1], what).toBe(row.dtypes[0]);
      if (row.mode === 'torch' || !row.compiled) expect(row.diff, what).toBe(0);
      // the kernel scales in float32 and rounds once, where the original rounds the bfloat16 product
      else expect(row.diff, what).toBeLessThanOrEqual((row.dtypes[0] === 'torch.bfloat16' ? 1e-2 : 1e-5) * row.scale);
    }
    // the kernel did run: for each rewritten class where weight and input are both float32
    for (const name of RMS_REWRITTEN) {
      expect(rows.find((w) => w.mode === 'compiled' && w.name === name && w.weight === 'torch.float32' && w.input === 'torch.float32')?.compiled, name).toBeGreaterThan(0);
    }
  });
});
