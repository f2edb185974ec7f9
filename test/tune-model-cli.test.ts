// `adopt tune model.py`: the rewritten code is run once at the model's real size and every
// workload its compiled kernels were called with is tuned (here with --budget 0: records only,
// so the test measures nothing and checks the workloads found and the schedule file written).
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { adopt, looksLikeCrash, repoRoot } from './helpers/cli.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'adopt-tune-model-'));
const fixture = join(repoRoot, 'fixtures/models/llama_style.py');
const configDefault = (field: string) => Number(new RegExp(`${field}: int = (\\d+)`).exec(readFileSync(fixture, 'utf8'))![1]);

type Found = { kernel: string; workload: Record<string, number | string> };

// The fixture's sizes are far below the kernels' CPU size floors (its calls would run the torch
// code, and nothing would be tuned): these tests set the floors to 0, as the variable allows, to
// check how workloads are found; the last test checks what the floors do at these sizes.
const ANY_SIZE = { ADOPT_CPU_MIN_BYTES: '0' };

function tune(args: string[], env: Record<string, string> = ANY_SIZE) {
  const dir = tmp();
  const r = adopt(['tune', fixture, '--budget', '0', '--db', join(dir, 'r.jsonl'), '--schedules', join(dir, 's.json'), '--json', ...args], { env });
  return { r, dir };
}

describe('adopt tune MODEL', () => {
  it('finds the workloads of every inserted kernel at the config class defaults', () => {
    const { r, dir } = tune(['--batch', '2', '--seq', '24']);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout);
    const found = s.tuned as Found[];
    const hidden = configDefault('hidden_size');
    const heads = configDefault('num_attention_heads');
    // the forward takes labels: it is given them, so the fused LM-head loss runs and is tuned too
    expect(found.map((w) => w.kernel).sort()).toEqual(['flash_attention', 'gated_act', 'linear_cross_entropy', 'rms_norm', 'rope']);
    expect(found.find((w) => w.kernel === 'rms_norm')!.workload).toEqual({ dtype: 'float32', n: hidden, rows: 2 * 24 });
    expect(found.find((w) => w.kernel === 'flash_attention')!.workload).toMatchObject({ batch: 2, heads, q_len: 24, k_len: 24, head_dim: hidden / heads });
    expect(s.classes.find((c: { status: string }) => c.status === 'ran').depth).toEqual({ num_hidden_layers: { from: configDefault('num_hidden_layers'), to: 1 } });
    const file = JSON.parse(readFileSync(join(dir, 's.json'), 'utf8'));
    expect(file.format).toBe('adopt-schedules/1');
    expect(file.entries.map((e: Found) => e.kernel).sort()).toEqual(found.map((w) => w.kernel).sort());
    expect(s.measurements).toBe(0);
  });

  it('takes the sizes from --config over the defaults', () => {
    const { r } = tune(['--batch', '1', '--seq', '16', '--config', '{"hidden_size": 96, "num_attention_heads": 4, "num_key_value_heads": 2}']);
    expect(r.code, r.stderr).toBe(0);
    const rms = (JSON.parse(r.stdout).tuned as Found[]).find((w) => w.kernel === 'rms_norm')!;
    expect(rms.workload).toEqual({ dtype: 'float32', n: 96, rows: 16 });
  });

  it('tunes the workloads in the dtype the model runs in (--dtype), and refuses one a kernel lacks', () => {
    const { r, dir } = tune(['--batch', '1', '--seq', '16', '--dtype', 'bfloat16']);
    expect(r.code, r.stderr).toBe(0);
    const found = JSON.parse(r.stdout).tuned as Found[];
    expect(found.length).toBeGreaterThan(0);
    expect(found.every((w) => w.workload.dtype === 'bfloat16')).toBe(true);
    const file = JSON.parse(readFileSync(join(dir, 's.json'), 'utf8'));
    expect(file.entries.every((e: Found) => e.workload.dtype === 'bfloat16')).toBe(true);
    const bad = tune(['--batch', '1', '--seq', '16', '--dtype', 'float64']).r;
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--dtype float64: \w+ takes float32 or bfloat16/);
    expect(looksLikeCrash(bad.stderr)).toBe(false);
  });

  it('says which kernels ran only below their size floor, and tunes nothing of theirs', () => {
    // an empty value counts as unset, whatever the calling shell exports
    // the base model: the LM head's fused loss has no CPU floor (its point is the logits' memory)
    const { r, dir } = tune(['--batch', '1', '--seq', '8', '--class', 'LlamaModel'], { ADOPT_CPU_MIN_BYTES: '' });
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s.tuned).toEqual([]);
    expect(s.below_floor).toEqual(['flash_attention', 'gated_act', 'rms_norm', 'rope']);
    expect(r.stderr).toMatch(/every call of flash_attention, gated_act, rms_norm, rope was below the kernel's CPU size floor at these sizes/);
    expect(r.stderr).toMatch(/ADOPT_CPU_MIN_BYTES=0 tunes them anyway/);
    expect(existsSync(join(dir, 's.json'))).toBe(false);
    // the negative control: the same run with the floors at 0 finds them all
    expect((JSON.parse(tune(['--batch', '1', '--seq', '8', '--class', 'LlamaModel']).r.stdout).tuned as Found[]).length).toBeGreaterThan(0);
  });

  it('says when there is nothing to tune, and refuses a model it cannot build at its real size', () => {
    const dir = tmp();
    const plain = join(dir, 'plain.py');
    writeFileSync(plain, 'import torch\n\n\ndef f(x):\n    return x + 1\n');
    const none = adopt(['tune', plain, '--budget', '0']);
    expect(none.code).toBe(0);
    expect(none.stdout).toMatch(/nothing to tune/);
    const needs = join(dir, 'needs.py');
    writeFileSync(needs, readFileSync(fixture, 'utf8').replace(/^class LlamaConfig:[\s\S]*?\n\n\n/m, '').replace(/LlamaConfig/g, 'Cfg'));
    const r = adopt(['tune', needs, '--budget', '0', '--db', join(dir, 'r.jsonl')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/no model class could be built and run at its real size/);
    expect(looksLikeCrash(r.stderr)).toBe(false);
    const bad = adopt(['tune', fixture, '--config', '[1]']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--config takes a JSON object/);
  });
});
