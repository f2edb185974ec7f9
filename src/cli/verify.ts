// `adopt verify ORIGINAL REWRITTEN`: the numerical check of a rewrite, run in torch by the harness
// under native/ (strict state-dict load, forward and gradients in eval and train mode). With
// --class and --shape it checks that class on that input; otherwise every class the file defines,
// built tiny, on inputs the harness finds (a helper module without classes: through the files of
// its package that use it, as `rewrite --verify` checks it).
import { existsSync, readFileSync } from 'node:fs';
import { AdoptError } from '../diag.js';
import { checkFile, exercisedOnly } from '../pipeline/index.js';
import { checkPair } from '../verify/pair.js';
import { EXIT } from './policy.js';

export interface VerifyOptions { class?: string; shape?: string; dtype?: string; json?: boolean; config?: string }

export function verifyCommand(original: string, rewritten: string, opts: VerifyOptions): number {
  const missing = [original, rewritten].filter((p) => !existsSync(p));
  // both named, not only the first: the user fixes the command once
  for (const p of missing) process.stderr.write(`adopt: ${p}: no such file\n`);
  if (missing.length) return EXIT.input;
  if (opts.shape && !opts.class) throw new AdoptError('--shape needs --class: the class the input is for');
  if (opts.shape && !/^\d+(,\d+)*$/.test(opts.shape)) throw new AdoptError('--shape must be comma-separated sizes of the input, e.g. 2,7,32');
  if (opts.config) {
    try { if (typeof JSON.parse(opts.config) !== 'object') throw new Error(); } catch { throw new AdoptError(`--config must be a JSON object, got '${opts.config}'`); }
  }
  if (!opts.shape) return verifyEveryClass(original, rewritten, opts);
  const r = checkPair(original, rewritten, { model: opts.class!, shape: opts.shape, dtype: opts.dtype ?? 'fp32', config: opts.config });
  if (!r.ok) throw new AdoptError(`verification could not run: ${r.error}`);
  const v = r.check;
  // the CLI's JSON keeps its `verified` flag beside the harness's status
  if (opts.json) process.stdout.write(`${JSON.stringify({ verified: v.status === 'verified', ...v })}\n`);
  if (v.status === 'not_runnable') {
    if (!opts.json) process.stdout.write(`not runnable: ${v.reason}\n`);
    return 2;
  }
  if (!opts.json) {
    process.stdout.write(v.status === 'verified' ? `verified: outputs and gradients match (max abs error ${(v.max_abs ?? 0).toExponential(2)})\n` : `mismatch:\n${(v.problems ?? []).map((p) => `  ${p}`).join('\n')}\n`);
  }
  return v.status === 'verified' ? 0 : 1;
}

function verifyEveryClass(original: string, rewritten: string, opts: VerifyOptions): number {
  let text: string;
  let originalText: string;
  try { text = readFileSync(rewritten, 'utf8'); } catch (e) { throw new AdoptError(`${rewritten}: cannot read: ${(e as Error).message}`); }
  try { originalText = readFileSync(original, 'utf8'); } catch (e) { throw new AdoptError(`${original}: cannot read: ${(e as Error).message}`); }
  const dtype = opts.dtype === 'fp32' || opts.dtype === undefined ? (opts.dtype ? 'fp32' : 'fp64') : opts.dtype === 'fp64' ? 'fp64' : null;
  if (!dtype) throw new AdoptError('without --shape, --dtype is fp32 or fp64');
  const r = checkFile(original, { rewritten: text }, { classes: opts.class ? [opts.class] : undefined, config: opts.config, dtype, repeats: 5 });
  if (!r.ok) throw new AdoptError(`verification could not run: ${r.error}`);
  // a class in which the rewrite's own code never ran is not exercised, as `rewrite --verify`
  // reports it (two identical files have no rewritten code: their check stands as it is)
  const classes = text !== originalText ? exercisedOnly(r.results) : r.results;
  const verified = classes.filter((x) => x.status === 'verified');
  const mismatch = classes.filter((x) => x.status === 'mismatch');
  const unexercised = classes.filter((x) => x.status === 'not_exercised');
  const summary = { verified: mismatch.length === 0 && verified.length > 0, classes: classes.map(({ variant: _v, ...rest }) => rest), torch: r.torch };
  if (opts.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
  else {
    for (const c of classes) {
      const t = c.timings ? ` forward x${c.timings.forward.ratio?.toFixed(2)}, train x${c.timings.train.ratio?.toFixed(2)}` : '';
      const detail = c.status === 'verified' ? `max abs error ${(c.max_abs ?? 0).toExponential(2)}, fast-path calls ${c.fast_path_calls};${t}` : c.status === 'mismatch' ? (c.problems ?? []).join('; ') : c.reason ?? '';
      process.stdout.write(`${(c.class ?? '').padEnd(28)} ${c.status.padEnd(13)} ${detail}\n`);
    }
    const rest = classes.length - verified.length - mismatch.length - unexercised.length;
    process.stdout.write(`${summary.verified ? 'verified' : mismatch.length ? 'mismatch' : unexercised.length ? 'not exercised' : 'not runnable'}: ${verified.length} verified, ${mismatch.length} mismatch, ${unexercised.length} not exercised, ${rest} not runnable\n`);
  }
  if (mismatch.length) return 1;
  return verified.length ? 0 : 2;
}
