// `adopt tune --kernel K --shape rows=4096,n=768`: tunes one kernel at one workload on this CPU,
// records every measurement in the record store and prints measurements, time and the speed-up
// over the default schedule. (`adopt tune model.py` is not built yet: it needs the workloads the
// rewrite pipeline implies.)
import { writeFileSync } from 'node:fs';
import { Progress } from '../bench/progress.js';
import { AdoptError } from '../diag.js';
import { LocalMeasurer, localTargetInfo } from '../tune/measurer.js';
import { type Workload, loadRegistry } from '../tune/space.js';
import { STRATEGIES, type StrategyName, type TuneSummary, scheduleFileText, tuneWorkload } from '../tune/tuner.js';

export interface TuneCliOptions {
  kernel?: string;
  shape?: string;
  dtype?: string;
  target?: string;
  budget?: string;
  strategy?: string;
  db?: string;
  schedules?: string;
  seed?: string;
  force?: boolean;
  repeats?: string;
  json?: boolean;
}

export function parseShape(text: string): Workload {
  const w: Workload = {};
  for (const part of text.split(',').map((p) => p.trim()).filter(Boolean)) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.+)$/.exec(part);
    if (!m) throw new AdoptError(`--shape takes NAME=VALUE pairs separated by commas (e.g. rows=4096,n=768), not '${part}'`);
    w[m[1]] = /^-?\d+$/.test(m[2]) ? Number(m[2]) : m[2];
  }
  return w;
}

function fmtMs(s: number | null): string {
  return s === null ? '-' : `${(s * 1e3).toFixed(3)} ms`;
}

function printSummary(s: TuneSummary): void {
  const out = process.stdout;
  const wl = Object.entries(s.workload).map(([k, v]) => `${k}=${v}`).join(',');
  out.write(`${s.kernel} ${wl} on target ${s.target} (strategy ${s.strategy})\n`);
  out.write(`  schedule:     ${JSON.stringify(s.schedule)} (${s.source})\n`);
  out.write(`  measurements: ${s.measurements}${s.failures ? ` (${s.failures} failed: never chosen)` : ''}, ${s.seconds.toFixed(1)} s\n`);
  if (s.speedup !== null) out.write(`  default ${fmtMs(s.default_s)}, tuned ${fmtMs(s.best_s)}: speed-up ${s.speedup.toFixed(2)}x over the default schedule (default time / tuned time, re-timed interleaved; above 1 is faster)\n`);
  else if (s.best_s !== null) out.write(`  recorded time ${fmtMs(s.best_s)}\n`);
  for (const n of s.notes) out.write(`  note: ${n}\n`);
  out.write(`  records: ${s.db}\n`);
}

export async function tuneCommand(file: string | undefined, opts: TuneCliOptions): Promise<number> {
  if (file) throw new AdoptError(`adopt tune ${file}: tuning the workloads of a model file is not built yet; use --kernel K --shape ...`);
  if (!opts.kernel || !opts.shape) throw new AdoptError('adopt tune needs --kernel K and --shape NAME=VALUE,... (e.g. --kernel rms_norm --shape rows=4096,n=768)');
  const target = opts.target ?? 'cpu';
  if (target !== 'cpu') throw new AdoptError(`--target ${target}: only the local CPU measurer exists so far (the schedule spaces for cuda are measured with Triton on a GPU machine)`);
  const strategy = (opts.strategy ?? 'auto') as StrategyName;
  if (!STRATEGIES.includes(strategy)) throw new AdoptError(`--strategy must be one of ${STRATEGIES.join(', ')}, not '${opts.strategy}'`);
  const budget = Number(opts.budget ?? '32');
  if (!Number.isInteger(budget) || budget < 0) throw new AdoptError(`--budget takes a whole number of measurements, not '${opts.budget}'`);
  let reg;
  try { reg = loadRegistry(); } catch (e) { throw new AdoptError((e as Error).message); }
  const k = reg.kernels[opts.kernel];
  if (!k) throw new AdoptError(`unknown kernel '${opts.kernel}'; known: ${Object.keys(reg.kernels).sort().join(', ')}`);
  const workload = parseShape(opts.shape);
  const dtype = opts.dtype ?? String(workload.dtype ?? 'float32');
  if (!k.dtypes.includes(dtype)) throw new AdoptError(`${opts.kernel} takes dtype ${k.dtypes.join(' or ')}, not '${dtype}'`);
  workload.dtype = dtype;
  const missing = k.workload_fields.filter((f) => f !== 'dtype' && !(f in workload));
  const extra = Object.keys(workload).filter((f) => !k.workload_fields.includes(f));
  if (missing.length || extra.length) {
    throw new AdoptError(`--shape for ${opts.kernel} names ${k.workload_fields.filter((f) => f !== 'dtype').join(', ')}${missing.length ? `; missing: ${missing.join(', ')}` : ''}${extra.length ? `; unknown: ${extra.join(', ')}` : ''}`);
  }
  let info;
  try { info = localTargetInfo(); } catch (e) { throw new AdoptError((e as Error).message); }
  const bar = new Progress('tuning', budget);
  const summary = await tuneWorkload({
    kernel: opts.kernel, workload, budget, strategy, db: opts.db, seed: Number(opts.seed ?? '0'), force: !!opts.force, registry: reg, targetInfo: info,
    measurer: new LocalMeasurer({ repeats: opts.repeats ? Number(opts.repeats) : undefined }),
    onTrial: (t) => bar.tick(`${t.status} ${t.median_s !== null ? (t.median_s * 1e3).toFixed(2) + 'ms' : ''}`),
  });
  bar.end();
  if (opts.schedules) {
    writeFileSync(opts.schedules, scheduleFileText(opts.schedules, info.target, [{ kernel: summary.kernel, workload: summary.workload, schedule: summary.schedule }]));
    summary.notes.push(`schedule written to ${opts.schedules}`);
  }
  if (opts.json) process.stdout.write(`${JSON.stringify(summary, null, 1)}\n`);
  else printSummary(summary);
  return 0;
}
