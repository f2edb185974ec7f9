// The pipeline module in process: stages in order, every input listed, the tune hook's place,
// and how model verdicts become benchmark rows and the report's speed column.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { speedVerdict } from '../../src/bench/report.js';
import { rewriteCorpus, verifyCorpus } from '../../src/bench/run.js';
import { runPipeline, verifyModels, type StageEvent, type Verifier } from '../../src/pipeline/index.js';
import { tempProject } from '../helpers/ir.js';

const MODEL = 'import torch\nfrom torch import nn\n\n\nclass M(nn.Module):\n    def forward(self, x):\n        return torch.softmax(x, dim=-1)\n';
const quiet = { start() {}, tick() {}, end() {} };

describe('runPipeline', () => {
  it('runs the stages in order, lists every input with its error, and passes the run through the tune hook', () => {
    const dir = tempProject({ 'good.py': MODEL, 'blob.py': Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0x00]), 'empty.py': '' });
    const events: StageEvent[] = [];
    let tuned = 0;
    const r = runPipeline([dir], { onStage: (e) => events.push(e), tune: (plan, run) => { tuned = plan.sites.length; return { ...run, sites: run.sites.map((s) => ({ ...s, reason: `${s.reason} (tuned)` })) }; } });
    expect(events.map((e) => `${e.stage}${e.seconds === undefined ? '' : ' done'}`)).toEqual(['analyse', 'analyse done', 'match', 'match done', 'synthesize', 'synthesize done']);
    expect(tuned).toBe(1);
    expect(r.sites[0].reason).toMatch(/\(tuned\)$/);
    const by = (name: string) => r.inputs.find((i) => i.path.endsWith(`/${name}`));
    expect(r.inputs).toHaveLength(3);
    expect(by('blob.py')?.error).toMatch(/blob\.py:1:5: error: binary file/);
    expect(by('good.py')).toMatchObject({ changed: true, error: null });
    expect(by('empty.py')).toMatchObject({ changed: false, error: null });
    expect(r.empty).toBe(false);
    expect(runPipeline([join(dir, 'empty.py')]).empty).toBe(true);
  });
});

describe('model verification for the benchmarks', () => {
  it('a model the verifier gave no verdict for is not runnable, never verified', async () => {
    const verifier: Verifier = async (targets, tick) => { tick(targets[0].model); return [{ model: targets[0].model, status: 'verified', reason: 'ok' }]; };
    const { verdicts } = await verifyModels([{ model: 'a', original: 'a.py', rewrittenText: '' }, { model: 'b', original: 'b.py', rewrittenText: '' }], verifier, quiet);
    expect(verdicts.get('a')?.status).toBe('verified');
    expect(verdicts.get('b')).toMatchObject({ status: 'not_runnable', reason: 'no result' });
  });

  it('a verdict replaces the row\'s "not verified" reason, also when it gives none', async () => {
    const dir = tempProject({ 'm.py': MODEL });
    const run = rewriteCorpus([{ model: 'm.py', file: join(dir, 'm.py') }], { root: dir, out: join(dir, 'out'), label: 'test' });
    expect(run.rows[0]).toMatchObject({ status: 'not_verified', reason: 'run with --verify to verify', diff: 'diffs/m.diff' });
    const timings = { eval: { original_s: 1, rewritten_s: 0.5 }, train: { original_s: 1, rewritten_s: 0.6 } };
    await verifyCorpus(run, async (targets) => targets.map((t) => ({ model: t.model, status: 'verified' as const, timings })), 'test');
    expect(run.rows[0].status).toBe('verified');
    expect(run.rows[0].reason).toBeUndefined();
    expect(run.rows[0].sites).toBe(1);
  });
});

describe('the report\'s speed column', () => {
  const row = (fwd: number, train: number) => ({ model: 'm', status: 'verified', timings: { eval: { original_s: 1, rewritten_s: fwd }, train: { original_s: 1, rewritten_s: train } } });
  it('names the slower of the two by the geometric mean of forward and training ratios, 1.1 either way', () => {
    expect(speedVerdict(row(1.5, 1.2))).toEqual({ text: 'rewritten slower (forward x1.50, train x1.20)', cls: 'slower' });
    expect(speedVerdict(row(0.5, 0.8))).toEqual({ text: 'original slower (forward x0.50, train x0.80)', cls: 'faster' });
    expect(speedVerdict(row(1.15, 0.95))?.cls).toBe('same');
    expect(speedVerdict({ model: 'm', status: 'not_runnable' })).toBeUndefined();
  });
});
