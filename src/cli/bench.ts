// `adopt bench DIR | --hf [VERSION]`: the whole pipeline over a corpus, with a terminal table,
// JSON and an offline HTML report.
import { AdoptError } from '../diag.js';
import { benchDirectory, printDirectory } from '../bench/directory.js';
import { benchHf, printHf } from '../bench/hf.js';
import { EXIT } from './policy.js';

export interface BenchOptions { hf?: string | boolean; verify?: boolean; labels?: string; report?: string; out?: string; json?: boolean }

export async function benchCommand(dir: string | undefined, opts: BenchOptions): Promise<number> {
  if (!!dir === !!opts.hf) throw new AdoptError('give a directory or --hf [VERSION], not both');
  if (opts.hf) {
    const version = typeof opts.hf === 'string' ? opts.hf : undefined;
    if (version && !/^\d+\.\d+\.\d+$/.test(version)) throw new AdoptError(`--hf takes a transformers version such as 4.35.0, got '${version}'`);
    if (opts.labels) throw new AdoptError('--labels goes with a directory; --hf is scored against Adopter\'s ground truth');
    const r = await benchHf({ version, verify: opts.verify, out: opts.out, report: opts.report });
    if (opts.json) process.stdout.write(`${JSON.stringify({ summary: r.summary, per_rule: r.perRule, models: r.rows })}\n`);
    else printHf(r);
    return r.summary.mismatch ? EXIT.differs : EXIT.ok;
  }
  const r = await benchDirectory(dir!, { verify: opts.verify, labels: opts.labels, out: opts.out, report: opts.report });
  if (opts.json) process.stdout.write(`${JSON.stringify({ summary: r.summary, labels: r.labels, files: r.rows })}\n`);
  else printDirectory(r);
  return r.summary.mismatch ? EXIT.differs : EXIT.ok;
}
