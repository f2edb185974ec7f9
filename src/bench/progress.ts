// Progress for long runs on stderr: one line per pipeline stage as it starts and ends (always, so
// a log shows where the time went), and a bar for verification drawn only on a terminal.
import type { StageEvent, VerifyProgress } from '../pipeline/index.js';

const VERB: Record<StageEvent['stage'], string> = { analyse: 'analysing', match: 'matching', synthesize: 'synthesizing', tune: 'tuning', verify: 'verifying', emit: 'writing' };

/** A stage listener that says what the pipeline is doing, e.g. `bench: analysing 199 files`. */
export function stageLines(label: string, write = (s: string) => process.stderr.write(s)): (e: StageEvent) => void {
  return (e) => write(e.seconds === undefined ? `${label}: ${VERB[e.stage]} ${e.files} file(s)\n` : `${label}: ${e.stage} done in ${e.seconds.toFixed(1)}s\n`);
}

export class Progress implements VerifyProgress {
  private readonly tty = !!process.stderr.isTTY;
  private done = 0;

  constructor(private readonly label: string, private total = 0) {}

  start(total: number): void {
    this.total = total;
    this.done = 0;
    process.stderr.write(`${this.label}: ${total} model(s)\n`);
  }

  tick(what = ''): void {
    this.done++;
    if (!this.tty) return;
    const width = 30;
    const filled = this.total ? Math.round((width * this.done) / this.total) : width;
    process.stderr.write(`\r${this.label} [${'#'.repeat(filled)}${' '.repeat(width - filled)}] ${this.done}/${this.total} ${what.slice(0, 30).padEnd(30)}`);
  }

  end(): void {
    if (this.tty) process.stderr.write('\n');
  }
}
