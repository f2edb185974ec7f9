// A progress bar for long runs, drawn on stderr only when it is a terminal (quiet in CI and pipes).
export class Progress {
  private readonly tty = !!process.stderr.isTTY;
  private done = 0;

  constructor(private readonly label: string, private readonly total: number) {}

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
