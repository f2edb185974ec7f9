// `adopt verify ORIGINAL REWRITTEN`: the numerical check of a rewrite, run in torch by the harness
// under native/ (strict state-dict load, forward and gradients in eval and train mode).
import { AdoptError } from '../diag.js';
import { runPythonJson } from '../verify/python.js';

export interface VerifyOptions { class?: string; shape?: string; dtype?: string; atol?: string; rtol?: string; json?: boolean }

export function verifyCommand(original: string, rewritten: string, opts: VerifyOptions): number {
  if (!opts.class) throw new AdoptError('--class NAME is required: the nn.Module class to build in both files');
  if (!opts.shape || !/^\d+(,\d+)*$/.test(opts.shape)) throw new AdoptError('--shape must be comma-separated sizes of the input, e.g. 2,7,32');
  const r = runPythonJson('adopt_harness.check_pair', [
    original, rewritten, '--model', opts.class, '--shape', opts.shape, '--dtype', opts.dtype ?? 'fp32',
    '--atol', opts.atol ?? '1e-5', '--rtol', opts.rtol ?? '1e-4',
  ]);
  if (!r.ok) throw new AdoptError(`verification could not run: ${r.error}`);
  const v = r.value as { verified: boolean; problems: string[]; max_abs: number; max_rel: number };
  if (opts.json) process.stdout.write(`${JSON.stringify(v)}\n`);
  else {
    process.stdout.write(v.verified ? `verified: outputs and gradients match (max abs error ${v.max_abs.toExponential(2)})\n` : `mismatch:\n${v.problems.map((p) => `  ${p}`).join('\n')}\n`);
  }
  return v.verified ? 0 : 1;
}
