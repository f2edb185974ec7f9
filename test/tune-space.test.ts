// The TypeScript schedule space agrees with the Python one (native/adopt_kernels/registry.py) on
// the registry's kernels: enumeration counts, legality, legalisation; constraints alike.
import { describe, expect, it } from 'vitest';
import { Rng } from '../src/tune/rng.js';
import { Space, checkConstraint, loadRegistry, scheduleKey, vectorLevel } from '../src/tune/space.js';

const sameAsDefault = (a: Record<string, unknown>, b: Record<string, unknown>) => scheduleKey(a as never) === scheduleKey(b as never);
import { runPython } from '../src/verify/python.js';

function py(script: string, input: unknown): unknown {
  const r = runPython(['-W', 'ignore', '-c', script], { input: JSON.stringify(input), timeoutMs: 120_000 });
  if (!r.ok) throw new Error(r.error);
  if (r.status !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout.trim().split('\n').pop() as string);
}

const PY_CHECK = `
import json, sys
from adopt_kernels import registry
from adopt_kernels import kernels
req = json.load(sys.stdin)
out = {}
for name, cases in req.items():
    k = registry.KERNELS[name]
    out[name] = [{"count": sum(1 for _ in k.space.enumerate(c["workload"])),
                  "legal": [k.space.legal(s, c["workload"]) for s in c["schedules"]],
                  "legalised": [k.space.legalise(s, c["workload"]) for s in c["schedules"]]} for c in cases]
print(json.dumps(out))
`;

// this machine's CPU flags, as the Python side reads them: its defaults are this machine's
const hostFlags = () => py('import json, sys; from adopt_kernels import target; print(json.dumps(sorted(target.cpu_identity()["flags"])))', null) as string[];

describe('schedule space', () => {
  it('takes a target default on its vector level only, as Python does', () => {
    const j = { params: { vec_bits: [128, 256, 512], block: [8, 16] }, default: { vec_bits: 256, block: 8 }, constraints: [], target_defaults: { avx512: { vec_bits: 512 } } };
    expect(Space.fromJson(j, ['avx2', 'fma', 'avx512f']).defaults).toEqual({ vec_bits: 512, block: 8 });
    expect(Space.fromJson(j, ['avx2', 'fma']).defaults).toEqual({ vec_bits: 256, block: 8 });
    expect(Space.fromJson(j).defaults).toEqual({ vec_bits: 256, block: 8 });
    expect(vectorLevel(['sse4_2'])).toBe(null);
    const reg = loadRegistry();
    const want = py(`
import json
from adopt_kernels import registry
print(json.dumps({n: {lv: k.space.default_for(lv) for lv in ("avx2", "avx512")} for n, k in registry.KERNELS.items()}))`, null) as Record<string, Record<string, unknown>>;
    for (const [n, k] of Object.entries(reg.kernels)) {
      expect(Space.fromJson(k.space, ['avx2']).defaults, n).toEqual(want[n].avx2);
      expect(Space.fromJson(k.space, ['avx2', 'avx512f']).defaults, n).toEqual(want[n].avx512);
    }
  });

  it('agrees with Python on every registered kernel: counts, legality, legalise', () => {
    const reg = loadRegistry();
    const flags = hostFlags();
    const names = Object.keys(reg.kernels);
    expect(names.length).toBeGreaterThan(0);
    const rng = new Rng(3);
    const req: Record<string, { workload: Record<string, unknown>; schedules: Record<string, unknown>[] }[]> = {};
    for (const n of names) {
      const k = reg.kernels[n];
      const space = Space.fromJson(k.space, flags);
      req[n] = k.example_workloads.slice(0, 2).map((w) => {
        const schedules: Record<string, unknown>[] = [space.sample(rng, w), space.mutate(space.defaults, rng, w), { ...space.defaults }];
        const [p0] = space.names;
        schedules.push({ ...space.defaults, [p0]: 12345 }); // a value outside the space
        const partial = { ...space.defaults };
        delete partial[p0];
        schedules.push(partial); // a missing parameter
        return { workload: w, schedules };
      });
    }
    const out = py(PY_CHECK, req) as Record<string, { count: number; legal: boolean[]; legalised: Record<string, unknown>[] }[]>;
    for (const n of names) {
      const space = Space.fromJson(reg.kernels[n].space, flags);
      req[n].forEach((c, i) => {
        const w = c.workload as Record<string, number>;
        expect(space.enumerate(w).length, `${n} count`).toBe(out[n][i].count);
        expect(c.schedules.map((s) => space.legal(s as Record<string, number>, w)), `${n} legality`).toEqual(out[n][i].legal);
        c.schedules.forEach((s, j) => {
          const mine = space.legalise(s as Record<string, number>, w);
          const theirs = out[n][i].legalised[j] as Record<string, number>;
          // equal distance (ties may break differently: the registry JSON sorts parameter names)
          expect(space.distance(mine, s as Record<string, number>)).toBeCloseTo(space.distance(theirs, s as Record<string, number>), 9);
          expect(space.legal(mine, w)).toBe(true);
        });
      });
    }
  }, 120_000);

  it('runs the default as dispatch does: legalised where the workload forbids it, as Python\'s lookup', () => {
    const reg = loadRegistry();
    const cases = [
      { kernel: 'gated_act', workload: { rows: 64, n: 128, act: 'silu', dtype: 'bfloat16' } },
      { kernel: 'layer_norm', workload: { rows: 64, n: 64, dtype: 'bfloat16' } },
      { kernel: 'gated_act', workload: { rows: 64, n: 4096, act: 'silu', dtype: 'bfloat16' } },
    ];
    const script = `
import json, sys
from adopt_kernels import registry, schedules
from adopt_kernels import kernels
print(json.dumps([schedules.lookup(registry.KERNELS[c["kernel"]], c["workload"], device="cuda") for c in json.load(sys.stdin)]))`;
    const theirs = py(script, cases) as Record<string, unknown>[];
    cases.forEach((c, i) => {
      const space = Space.fromJson(reg.kernels[c.kernel].cuda_space!);
      const mine = space.defaultAt(c.workload);
      expect(space.legal(mine, c.workload), c.kernel).toBe(true);
      expect(mine).toEqual(theirs[i]);
      expect(sameAsDefault(mine, space.defaults)).toBe(space.legal(space.defaults, c.workload));
    });
  });

  it('evaluates constraints as Python does (%, //, /, comparisons, unary minus)', () => {
    const params = { block: [1, 2, 3, 4, 8, 16], warps: [1, 2, 4] };
    const constraints = ['n % block == 0', 'block * warps <= 32', '(n // block) % 2 == 0', '-block < n / 3', 'block - n % 5 != 7'];
    const space = new Space(params, { block: 1, warps: 1 }, constraints);
    const workloads = [{ n: 48 }, { n: 30 }, { n: 7 }, { n: -12 }];
    const script = `
import json, sys
from adopt_kernels.registry import Space
req = json.load(sys.stdin)
sp = Space(params={k: tuple(v) for k, v in req["params"].items()}, default=req["default"], constraints=tuple(req["constraints"]))
print(json.dumps([sum(1 for _ in sp.enumerate(w)) for w in req["workloads"]]))`;
    const counts = py(script, { params, default: { block: 1, warps: 1 }, constraints, workloads }) as number[];
    expect(workloads.map((w) => space.enumerate(w).length)).toEqual(counts);
    expect(checkConstraint('-7 % 3 == 2', {})).toBe(true); // Python's modulo takes the divisor's sign
    expect(checkConstraint('-7 // 2 == -4', {})).toBe(true);
    expect(() => checkConstraint('__import__("os")', {})).toThrow(/not allowed/);
    expect(space.legal({ block: 4, warps: 1 }, {})).toBe(false); // a constraint naming a missing field: illegal
  }, 60_000);

  it('samples and mutates only legal schedules, reproducibly per seed', () => {
    const space = new Space({ a: [1, 2, 4, 8], b: ['x', 'y'] }, { a: 1, b: 'x' }, ['a * 2 <= n']);
    const w = { n: 8 };
    const draw = (seed: number) => { const r = new Rng(seed); return Array.from({ length: 20 }, () => scheduleKey(space.sample(r, w))); };
    expect(draw(5)).toEqual(draw(5));
    const r = new Rng(1);
    for (let i = 0; i < 50; i++) {
      expect(space.legal(space.sample(r, w), w)).toBe(true);
      const m = space.mutate({ a: 2, b: 'y' }, r, w);
      expect(space.legal(m, w)).toBe(true);
      expect(scheduleKey(m)).not.toBe(scheduleKey({ a: 2, b: 'y' }));
    }
    expect(space.legalise({ a: 8, b: 'y' }, w)).toEqual({ a: 4, b: 'y' });
    expect(space.enumerate({ n: 1 })).toEqual([]);
    expect(space.legalise({ a: 8, b: 'y' }, { n: 1 })).toEqual({ a: 1, b: 'x' });
  });
});
