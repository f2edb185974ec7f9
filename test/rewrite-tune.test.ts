// `adopt rewrite --tune`: the kept rewrites are tuned at the model's real size, the rewritten module
// loads the schedule file written beside it (beside the original when the output is a diff).
// --budget 0 keeps the test from measuring: records only, so the defaults are written.
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { adopt, repoRoot } from './helpers/cli.js';

const fixture = join(repoRoot, 'fixtures/models/llama_style.py');
const tmp = () => mkdtempSync(join(tmpdir(), 'adopt-rewrite-tune-'));
const tuneArgs = (dir: string) => ['--tune', '--budget', '0', '--batch', '2', '--seq', '16', '--db', join(dir, 'db.jsonl')];
// the fixture's calls are far below the kernels' CPU size floors, where nothing is tuned: the
// floors are set to 0 so that the tests see workloads to tune (test/tune-model-cli.test.ts checks the floors)
const ANY_SIZE = { env: { ADOPT_CPU_MIN_BYTES: '0' } };

describe('adopt rewrite --tune', () => {
  it('writes the schedules beside the written module, which loads them', () => {
    const dir = tmp();
    const out = join(dir, 'out', 'llama.py');
    const r = adopt(['rewrite', fixture, '-o', out, ...tuneArgs(dir)], ANY_SIZE);
    expect(r.code, r.stderr).toBe(0);
    const sched = JSON.parse(readFileSync(join(dir, 'out', 'adopt-schedules.json'), 'utf8'));
    expect(sched.format).toBe('adopt-schedules/1');
    expect(sched.entries.map((e: { kernel: string }) => e.kernel).sort()).toEqual(['flash_attention', 'gated_act', 'linear_cross_entropy', 'rms_norm', 'rope']);
    expect(readFileSync(out, 'utf8')).toMatch(/\n {4}_adopt = None\nif _adopt is not None: .*\n {4}_adopt\.use_schedules\(__file__\)\n/);
    expect(r.stderr).toMatch(/5 workload\(s\), 0 measured, /);
    expect(r.stderr).toContain(`schedules written to ${join(dir, 'out', 'adopt-schedules.json')}`);
  });

  it('with a diff, puts the schedules beside the original, where the diff applies', () => {
    const dir = tmp();
    const model = join(dir, 'llama.py');
    copyFileSync(fixture, model);
    const r = adopt(['rewrite', model, ...tuneArgs(dir)], ANY_SIZE);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('+    _adopt.use_schedules(__file__)');
    expect(existsSync(join(dir, 'adopt-schedules.json'))).toBe(true);
  });

  it('refuses a file in the schedule file\'s place that is not one before tuning or writing anything', () => {
    const dir = tmp();
    const out = join(dir, 'out', 'llama.py');
    mkdirSync(join(dir, 'out'));
    writeFileSync(join(dir, 'out', 'adopt-schedules.json'), 'notes of my own\n');
    const r = adopt(['rewrite', fixture, '-o', out, ...tuneArgs(dir)], ANY_SIZE);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain(join(dir, 'out', 'adopt-schedules.json'));
    expect(readFileSync(join(dir, 'out', 'adopt-schedules.json'), 'utf8')).toBe('notes of my own\n');
    expect(existsSync(out)).toBe(false);
    expect(existsSync(join(dir, 'db.jsonl'))).toBe(false);
  });

  it('refuses tuning options without --tune, and --tune with --check', () => {
    const a = adopt(['rewrite', fixture, '--budget', '4']);
    expect(a.code).toBe(2);
    expect(a.stderr).toMatch(/--budget only go with --tune/);
    const b = adopt(['rewrite', fixture, '--tune', '--check']);
    expect(b.code).toBe(2);
    const c = adopt(['rewrite', fixture, '--tune', '--tune-config', 'hidden_size=4']);
    expect(c.code).toBe(2);
    expect(c.stderr).toMatch(/--tune-config takes a JSON object/);
  });
});
