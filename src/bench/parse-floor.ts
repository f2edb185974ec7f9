// The front end's floor: reading and tree-sitter parsing the same files, nothing else. The
// benchmarks report their own CPU time as a multiple of it, measured in the same process run.
import { parseOnly } from '../parse/python.js';
import { readSource } from '../parse/source.js';
import { round } from './format.js';

/** Wall and CPU seconds (user + system, all of the process's threads, so GC is included). */
export interface Cost { wall: number; cpu: number }

export function measure<T>(run: () => T): { value: T; cost: Cost } {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const value = run();
  const cpu = process.cpuUsage(cpu0);
  return { value, cost: { wall: (performance.now() - t0) / 1000, cpu: (cpu.user + cpu.system) / 1e6 } };
}

/** Read + tree-sitter parse of every file; unreadable files are skipped as the front end skips them. */
export function parseFloor(files: string[]): Cost {
  return measure(() => {
    for (const file of files) {
      const r = readSource(file);
      if (r.ok) parseOnly(r.source.text);
    }
  }).cost;
}

export function ratioSummary(cost: Cost, floor: Cost) {
  return { cpu_seconds: round(cost.cpu), wall_seconds: round(cost.wall), parse_cpu_seconds: round(floor.cpu), parse_wall_seconds: round(floor.wall), ratio_to_parse: round(cost.cpu / floor.cpu, 2) };
}

export function ratioLine(what: string, cost: Cost, floor: Cost): string {
  return `${what}: ${round(cost.cpu / floor.cpu, 2)}x tree-sitter's parse-only time (CPU ${round(cost.cpu, 2)}s vs ${round(floor.cpu, 2)}s; wall ${round(cost.wall, 2)}s vs ${round(floor.wall, 2)}s)`;
}
