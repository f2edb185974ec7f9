import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { verdictLine, verifyPython, verifyRewritten, type Checker, type ToVerify } from '../../src/bench/real-verify.js';
import type { ClassResult } from '../../src/verify/file.js';

const file = (rules: string[], alone: ToVerify['alone'] = (rule) => `# ${rule} alone`): ToVerify => ({
  key: 'pkg==1.0:pkg/model.py', path: '/nowhere/pkg/model.py', rewritten: '# together', rules, alone,
});

/** A harness stand-in: each variant's classes as `byVariant` says, recording what it was asked. */
function checker(byVariant: Record<string, ClassResult[]>, asked: string[][] = []): Checker {
  return (_path, variants) => {
    asked.push(Object.keys(variants));
    return { ok: true, torch: '2.14.1', results: Object.keys(variants).flatMap((v) => (byVariant[v] ?? []).map((r) => ({ ...r, variant: v }))) };
  };
}

describe('bench:real verification of one rewritten file', () => {
  it('a verified file counts its classes and the fast-path calls, and checks nothing alone', () => {
    const asked: string[][] = [];
    const v = verifyRewritten(file(['attention', 'rmsnorm']), checker({
      rewritten: [
        { class: 'Block', status: 'verified', fast_path_calls: 4, compiled_calls: 0 },
        { class: 'Model', status: 'verified', fast_path_calls: 8, compiled_calls: 2 },
        { class: 'Rotary', status: 'not_runnable', reason: 'cannot build Rotary: no value for its parameter \'base\'' },
      ],
    }, asked));
    expect(v.status).toBe('verified');
    expect(v.classes).toEqual({ verified: 2, mismatch: 0, not_runnable: 1 });
    expect(v.fast_path_calls).toBe(12);
    expect(v.compiled_calls).toBe(2);
    expect(v.not_runnable).toEqual(["Rotary: cannot build Rotary: no value for its parameter 'base'"]);
    expect(v.by_rule).toBeUndefined();
    expect(asked).toEqual([['rewritten']]);
    expect(verdictLine(v)).toMatch(/^verified \(attention, rmsnorm; 2 verified, 0 mismatch, 1 not runnable of 3 classes; fast path 12 calls/);
  });

  it('a mismatch is checked again with each rule alone, naming the rule at fault', () => {
    const asked: string[][] = [];
    const v = verifyRewritten(file(['attention', 'rmsnorm', 'rope'], (rule) => (rule === 'rope' ? { error: 'exit 2: no site' } : `# ${rule}`)), checker({
      rewritten: [{ class: 'Model', status: 'mismatch', problems: ['eval output 0: max error 0.5'] }],
      attention: [{ class: 'Model', status: 'verified' }],
      rmsnorm: [{ class: 'Model', status: 'mismatch', problems: ['train grad norm.weight: max error 0.1'] }],
    }, asked));
    expect(v.status).toBe('mismatch');
    expect(v.problems).toEqual(['Model: eval output 0: max error 0.5']);
    expect(asked).toEqual([['rewritten'], ['attention', 'rmsnorm']]);
    expect(v.by_rule).toEqual([
      { rule: 'rope', status: 'not_runnable', reason: 'not rewritten alone: exit 2: no site' },
      { rule: 'attention', status: 'verified' },
      { rule: 'rmsnorm', status: 'mismatch', problems: ['Model: train grad norm.weight: max error 0.1'] },
    ]);
    expect(verdictLine(v)).toContain('[alone: rope not_runnable, attention verified, rmsnorm mismatch]');
  });

  it('a harness that cannot run makes the file not runnable, with its reason', () => {
    const v = verifyRewritten(file(['conv_bn']), () => ({ ok: false, error: 'cannot import /x/model.py: ModuleNotFoundError: No module named \'timm\'' }));
    expect(v.status).toBe('not_runnable');
    expect(v.reason).toContain("No module named 'timm'");
    expect(v.classes).toEqual({ verified: 0, mismatch: 0, not_runnable: 0 });
  });

  it('a missing torch 2.x interpreter is said with what to do', () => {
    const r = verifyPython(join(tmpdir(), 'adopt-no-such-root'));
    expect('error' in r && r.error).toMatch(/does not exist \(run scripts\/setup-torch2\.sh, pass --python PATH/);
  });
});
