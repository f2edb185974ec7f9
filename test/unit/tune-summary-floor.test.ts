// The human-readable summary of `adopt tune MODEL` names the kernels whose every call was below
// their CPU size floor, beside the workloads it tuned (the JSON carries them as below_floor).
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { printModelSummary } from '../../src/cli/tune.js';
import type { Discovery, ModelTuneSummary } from '../../src/tune/model.js';

function printed(discovery: Discovery): string {
  let text = '';
  const out = new Writable({ write(chunk, _enc, done) { text += String(chunk); done(); } });
  const summary: ModelTuneSummary = { tuned: [], measurements: 0, seconds: 0, speedup: null, entries: [] };
  printModelSummary(summary, discovery, out);
  return text;
}

describe('adopt tune MODEL summary', () => {
  it('names the kernels called only below their floor, and says nothing of floors when there are none', () => {
    const base: Discovery = { workloads: [], classes: [], errors: [] };
    expect(printed({ ...base, belowFloor: ['rms_norm', 'rope'] })).toMatch(/called only below their CPU size floor at these sizes \(they run the torch code; not tuned\): rms_norm, rope/);
    expect(printed({ ...base, belowFloor: [] })).not.toMatch(/size floor/);
    expect(printed(base)).not.toMatch(/size floor/);
  });
});
