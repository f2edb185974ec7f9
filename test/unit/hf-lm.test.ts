// The LM-head half of bench:hf --verify: which models it takes (those with lm_head_ce rewritten),
// the classes it names to the harness, and that "verified" needs the fused kernel to have run.
import { describe, expect, it } from 'vitest';
import { lmHeadModels, lmRow, summarizeLm, verifyLmHeads } from '../../src/bench/hf-lm.js';
import type { CorpusRun, ModelRow } from '../../src/bench/run.js';
import type { ModelVerdict, VerifyTarget } from '../../src/pipeline/index.js';

const row = (model: string, rules: ModelRow['rules'], status: ModelRow['status'] = 'verified'): ModelRow => ({ model, status, sites: 1, file: `/p/${model}.py`, rules });

describe('LM-head verification', () => {
  it('takes the rewritten models whose lm_head_ce sites were rewritten, not those only found', () => {
    const rows = [
      row('gpt2', { lm_head_ce: { rewritten: 2, skipped: 0 }, attention: { rewritten: 1, skipped: 0 } }),
      row('llama', { lm_head_ce: { rewritten: 0, skipped: 1 }, rms_norm: { rewritten: 1, skipped: 0 } }),
      row('bert', { attention: { rewritten: 1, skipped: 0 } }),
      row('t5', { lm_head_ce: { rewritten: 1, skipped: 0 } }, 'not_rewritten'),
    ];
    expect(lmHeadModels(rows)).toEqual(['gpt2']);
  });

  it('counts a verified model as verified only when the fused kernel ran in it', () => {
    const ran: ModelVerdict = { model: 'gpt2', status: 'verified', class: 'GPT2LMHeadModel', compiled_kernels: { linear_cross_entropy: 4, flash_attention: 8 } };
    const idle: ModelVerdict = { model: 't5', status: 'verified', class: 'T5ForConditionalGeneration', compiled_kernels: { flash_attention: 4 } };
    const wrong: ModelVerdict = { model: 'bart', status: 'mismatch', problems: ['train: output 0 differs'], compiled_kernels: { linear_cross_entropy: 2 } };
    const rows = [lmRow(ran), lmRow(idle), lmRow(wrong), lmRow({ model: 'rwkv', status: 'not_runnable', reason: 'no inputs' })];
    expect(rows.map((r) => [r.status, r.fused_calls])).toEqual([['verified', 4], ['kernel_not_run', 0], ['mismatch', 2], ['not_runnable', 0]]);
    expect(rows[1].reason).toMatch(/linear_cross_entropy kernel did not run in T5ForConditionalGeneration/);
    const s = summarizeLm(rows, 1.23);
    expect(s).toEqual({ lm_head_rewritten: 4, lm_runnable: 3, lm_verified: 1, lm_kernel_not_run: 1, lm_mismatch: 1, lm_fused_calls: 6, lm_verify_seconds: 1.23 });
  });

  it('hands the verifier each model with the classes whose head was rewritten, and keeps a model it gave no verdict for', async () => {
    const site = (file: string, owner: string, decision: 'rewritten' | 'skipped', rule = 'lm_head_ce') => ({ rule, file, owner, method: 'forward', lines: [1, 2] as [number, number], bindings: {}, guards: [], decision, reason: '' });
    const file = (path: string) => ({ path, original: 'a', rewritten: 'b', edits: [] });
    const run = {
      rows: [row('gpt2', { lm_head_ce: { rewritten: 2, skipped: 1 } }), row('opt', { lm_head_ce: { rewritten: 1, skipped: 0 } })],
      changed: new Map([['gpt2', file('/p/gpt2.py')], ['opt', file('/p/opt.py')]]),
      result: { sites: [site('/p/gpt2.py', 'GPT2LMHeadModel', 'rewritten'), site('/p/gpt2.py', 'GPT2DoubleHeadsModel', 'rewritten'), site('/p/gpt2.py', 'Other', 'skipped'),
        site('/p/gpt2.py', 'GPT2Attention', 'rewritten', 'attention'), site('/p/opt.py', 'OPTForCausalLM', 'rewritten')] },
    } as unknown as CorpusRun;
    const seen: VerifyTarget[] = [];
    const verifier = async (targets: VerifyTarget[]) => {
      seen.push(...targets);
      return [{ model: 'gpt2', status: 'verified' as const, compiled_kernels: { linear_cross_entropy: 4 } }];
    };
    const { rows, summary } = await verifyLmHeads(run, verifier, (f) => `/mirror${f.path}`);
    expect(seen.map((t) => [t.model, t.rewrittenPath, t.classes])).toEqual([['gpt2', '/mirror/p/gpt2.py', ['GPT2LMHeadModel', 'GPT2DoubleHeadsModel']], ['opt', '/mirror/p/opt.py', ['OPTForCausalLM']]]);
    expect(rows.map((r) => [r.model, r.status])).toEqual([['gpt2', 'verified'], ['opt', 'not_runnable']]);
    expect(summary.lm_verified).toBe(1);
  });
});
