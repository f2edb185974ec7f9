// The TypeScript↔Python boundary: every harness line is validated against the schema generated
// from native/adopt_harness/schema.py, a malformed one is an error naming the harness and the
// field, and Python is launched one way (an interpreter given here stands in for the resolved one).
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runHarness, streamHarness } from '../src/verify/python.js';
import { readLine, resultSchema } from '../src/verify/results.js';
import { validate } from '../src/verify/schema.js';
import { tempProject } from './helpers/ir.js';

const line = (harness: string, kind: string, payload: unknown) => JSON.stringify({ adopt: 1, harness, kind, [kind]: payload });

/** A stand-in interpreter that ignores its arguments and prints these lines. */
function fakePython(lines: string[], exit = 0): string {
  const dir = tempProject({});
  const path = join(dir, 'python');
  writeFileSync(path, `#!/bin/sh\ncat <<'EOF'\n${lines.join('\n')}\nEOF\nexit ${exit}\n`);
  chmodSync(path, 0o755);
  return path;
}

describe('result schema', () => {
  it('accepts a check the harness writes and names the field of a malformed one', () => {
    const good = { status: 'verified', problems: [], max_abs: 1e-7, fast_path_calls: 2, compiled_kernels: { softmax: 2 }, timings: { eval: { original_s: 0.1, rewritten_s: 0.1 } } };
    expect(readLine('hf', line('hf', 'result', good))).toEqual({ kind: 'result', result: good });
    expect(() => readLine('hf', line('hf', 'result', { ...good, fast_path_calls: '2' }))).toThrow('harness hf: malformed result: result.fast_path_calls: expected integer, got string "2"');
    expect(() => readLine('hf', line('hf', 'result', { ...good, status: 'ok' }))).toThrow(/result\.status: expected one of "verified", "mismatch", "not_runnable"/);
    expect(() => readLine('pair', line('pair', 'result', { problems: [] }))).toThrow('harness pair: malformed result: result.status: missing (required)');
    expect(() => readLine('pair', line('pair', 'result', { status: 'verified', verifed: true }))).toThrow('result.verifed: not a field of this result');
    expect(() => readLine('hf', line('hf', 'result', { ...good, timings: { eval: { original_s: 0.1 } } }))).toThrow('result.timings.eval.rewritten_s: missing (required)');
  });

  it('reads the LM-head harness as a check of its own harness', () => {
    const good = { status: 'verified', model: 'gpt2', class: 'GPT2LMHeadModel, GPT2DoubleHeadsModel', compiled_kernels: { linear_cross_entropy: 4 }, notes: ['GPT2DoubleHeadsModel: not runnable: no inputs'] };
    expect(readLine('hf_lm', line('hf_lm', 'result', good))).toEqual({ kind: 'result', result: good });
    expect(() => readLine('hf_lm', line('hf_lm', 'result', { ...good, compiled_kernels: { linear_cross_entropy: 'x' } }))).toThrow(/harness hf_lm: malformed result: result\.compiled_kernels/);
  });

  it('checks the envelope and the harness it comes from', () => {
    expect(() => readLine('file', 'Traceback (most recent call last):')).toThrow('harness file: not a JSON line');
    expect(() => readLine('file', JSON.stringify({ adopt: 1, harness: 'file', kind: 'done' }))).toThrow(/line\.kind: expected one of "progress", "result"/);
    expect(() => readLine('file', line('pair', 'result', { status: 'verified' }))).toThrow('harness file: the line comes from the pair harness');
  });

  it('validates speed rows by their keyed entries', () => {
    const entry = { forward_original_s: 1, forward_rewritten_s: 0.9, forward_ratio: 0.9, train_original_s: 2, train_rewritten_s: 1.8, train_ratio: 0.9, per_rule: {}, memory_ratio: null };
    expect(readLine('speed', line('speed', 'result', { model: 'bert-base', seq128: entry })).kind).toBe('result');
    expect(() => readLine('speed', line('speed', 'result', { model: 'bert-base', seq128: { ...entry, forward_ratio: null } }))).toThrow('result.seq128.forward_ratio: expected number, got null');
  });

  it('refuses a schema keyword it does not implement rather than ignoring it', () => {
    expect(validate('x', { type: 'string', minLength: 3 })).toMatch(/uses 'minLength', which this validator does not implement/);
    expect(validate({}, { $ref: '#/$defs/Nothing' }, { $defs: {} })).toMatch(/does not define/);
    expect(Object.keys(resultSchema().$defs ?? {})).toEqual(expect.arrayContaining(['Envelope', 'Check', 'FileResult', 'SpeedRow']));
  });
});

describe('python launcher', () => {
  it('returns the validated results and the progress of a run', () => {
    const python = fakePython([line('pair', 'progress', { message: 'building' }), line('pair', 'result', { status: 'verified', problems: [] })]);
    const r = runHarness('pair', [], { python });
    expect(r).toEqual({ ok: true, results: [{ status: 'verified', problems: [] }], progress: [{ message: 'building' }] });
  });

  it('a malformed line is an error naming the harness and the field, with what came before it kept', async () => {
    const python = fakePython([line('hf', 'result', { status: 'verified', model: 'bert' }), line('hf', 'result', { status: 'verified', model: 7 })]);
    const seen: string[] = [];
    const r = await streamHarness('hf', [], { python, onResult: (x) => seen.push(x.model ?? '') });
    expect(r.ok).toBe(false);
    expect(!r.ok && r.error).toBe('harness hf: malformed result: result.model: expected string, got integer 7');
    expect(seen).toEqual(['bert']);
    expect(r.results).toHaveLength(1);
  });

  it('streams progress before the run ends, and reports a non-zero exit', async () => {
    const python = fakePython([line('speed', 'progress', { model: 'gpt2', seq: 128 })], 3);
    const progress: unknown[] = [];
    const r = await streamHarness('speed', [], { python, onProgress: (p) => progress.push(p) });
    expect(progress).toEqual([{ model: 'gpt2', seq: 128 }]);
    expect(!r.ok && r.error).toMatch(/^the speed harness exited with 3/);
  });

  it('an interpreter that does not exist is one clear error', () => {
    const r = runHarness('file', [], { python: '/nonexistent/python3' });
    expect(!r.ok && r.error).toBe('/nonexistent/python3 not found (run scripts/setup-python.sh or set ADOPT_PYTHON)');
  });

  it('runs the real pair harness and reads its result', () => {
    const rules = join(__dirname, '..', 'rules', 'softmax');
    const r = runHarness('pair', [join(rules, 'before.py'), join(rules, 'after.py'), '--model', 'ScoresHead', '--shape', '2,4,9,9', '--kernel', '_adopt.softmax']);
    expect(r.ok, !r.ok ? r.error : '').toBe(true);
    expect(r.results[0]).toMatchObject({ class: 'ScoresHead', status: 'verified', problems: [] });
    expect(r.results[0].fast_path_calls).toBeGreaterThan(0);
  }, 120_000);
});
