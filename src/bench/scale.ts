// bench:scale — how `adopt explain` and `adopt rewrite` grow with the size of one file: the same
// self-attention class (two sites: the attention and the softmax inside it) repeated to 128 KiB,
// 256 KiB, 512 KiB, 1 MiB and just under the default size limit. Each command runs as a child
// process, timed from outside, that reports its own peak memory. Prints a table and ends with one
// JSON line. Not a test: the figures depend on the machine.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_MAX_MIB } from '../parse/limits.js';
import { round } from './format.js';

const HEADER = 'import math\n\nimport torch\nfrom torch import nn\n\n\n';

function attentionClass(i: number): string {
  return [
    `class SelfAttention${i}(nn.Module):`,
    '    def __init__(self, dim):',
    '        super().__init__()',
    '        self.scale = 1.0 / math.sqrt(dim)',
    '',
    '    def forward(self, q, k, v, mask):',
    '        scores = torch.matmul(q, k.transpose(-2, -1)) * self.scale',
    '        scores = scores + mask',
    '        probs = torch.softmax(scores, dim=-1)',
    '        return torch.matmul(probs, v)',
    '', '', '',
  ].join('\n');
}

/** A model file of about `bytes` bytes (not over them), with the number of classes in it. */
export function scaleInput(bytes: number): { text: string; classes: number } {
  const parts = [HEADER];
  let size = HEADER.length;
  let i = 0;
  for (;;) {
    const c = attentionClass(i);
    if (size + c.length > bytes) break;
    parts.push(c);
    size += c.length;
    i++;
  }
  return { text: parts.join(''), classes: i };
}

interface Run { rc: number; seconds: number; cpuSeconds: number; peakMiB: number; sites?: number }

const here = dirname(fileURLToPath(import.meta.url));

/** One adopt command in a child process: wall time from outside, CPU time and peak memory from
 *  inside (on a shared machine the CPU time is the steadier figure). */
function runAdopt(args: string[], work: string): Run {
  const report = join(work, 'child.json');
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [join(here, 'scale.js'), '--child', report, ...args], { encoding: 'utf8', maxBuffer: 1 << 30, stdio: ['ignore', 'pipe', 'ignore'] });
  const seconds = (performance.now() - t0) / 1000;
  let child: { rc: number; maxRssKiB: number; cpuSeconds: number };
  try { child = JSON.parse(readFileSync(report, 'utf8')); } catch { return { rc: r.status ?? 137, seconds, cpuSeconds: NaN, peakMiB: NaN }; }
  rmSync(report, { force: true });
  const run: Run = { rc: child.rc, seconds, cpuSeconds: child.cpuSeconds, peakMiB: child.maxRssKiB / 1024 };
  if (args.includes('--json') && child.rc === 0) run.sites = (JSON.parse(r.stdout) as { sites: unknown[] }).sites.length;
  return run;
}

/** In the child: run the command, then record its exit code and peak memory. */
async function child(report: string, args: string[]): Promise<void> {
  const { main } = await import('../cli/main.js');
  const rc = await main(['node', 'adopt', ...args]);
  const cpu = process.cpuUsage();
  writeFileSync(report, JSON.stringify({ rc, maxRssKiB: process.resourceUsage().maxRSS, cpuSeconds: (cpu.user + cpu.system) / 1e6 }));
}

function option(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

async function bench(): Promise<void> {
  // sizes in KiB; the last is just under the default --max-file-size
  const sizes = (option('--sizes') ?? `128,256,512,1024,${DEFAULT_MAX_MIB * 1024 - 64}`).split(',').map(Number);
  const work = mkdtempSync(join(tmpdir(), 'adopt-scale-'));
  const rows: { kib: number; classes: number; sites: number; explain: Run; rewrite: Run }[] = [];
  try {
    console.log('     size  classes  sites   explain s    cpu s  MiB peak   rewrite s    cpu s  MiB peak');
    for (const kib of sizes) {
      const { text, classes } = scaleInput(kib * 1024);
      const file = join(work, `attention_${kib}k.py`);
      writeFileSync(file, text);
      const explain = runAdopt(['explain', file], work);
      const rewrite = runAdopt(['rewrite', '--json', file], work);
      rows.push({ kib, classes, sites: rewrite.sites ?? 0, explain, rewrite });
      const cell = (r: Run) => `${r.rc === 0 ? r.seconds.toFixed(2).padStart(10) : `exit ${r.rc}`.padStart(10)}  ${r.cpuSeconds.toFixed(2).padStart(7)}  ${r.peakMiB.toFixed(0).padStart(8)}`;
      console.log(`${`${kib} KiB`.padStart(9)} ${String(classes).padStart(8)} ${String(rewrite.sites ?? '-').padStart(6)}  ${cell(explain)}   ${cell(rewrite)}`);
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  // CPU seconds per site, largest input over smallest: about 1 (or under, as start-up is shared
  // out) when the growth is linear
  const [a, b] = [rows[0], rows[rows.length - 1]];
  const growth = a && b && a.sites && b.sites ? (b.rewrite.cpuSeconds / b.sites) / (a.rewrite.cpuSeconds / a.sites) : null;
  console.log(JSON.stringify({
    bench: 'scale',
    rows: rows.map((r) => ({ kib: r.kib, sites: r.sites, explain_s: round(r.explain.seconds, 2), explain_cpu_s: round(r.explain.cpuSeconds, 2), explain_mib: round(r.explain.peakMiB, 0), explain_rc: r.explain.rc, rewrite_s: round(r.rewrite.seconds, 2), rewrite_cpu_s: round(r.rewrite.cpuSeconds, 2), rewrite_mib: round(r.rewrite.peakMiB, 0), rewrite_rc: r.rewrite.rc })),
    rewrite_cpu_per_site_growth: growth === null ? null : round(growth, 2),
    failed: rows.filter((r) => r.explain.rc !== 0 || r.rewrite.rc !== 0).length,
  }));
}

// run as a script only (the tests import scaleInput)
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  if (process.argv[2] === '--child') await child(process.argv[3], process.argv.slice(4));
  else await bench();
}
