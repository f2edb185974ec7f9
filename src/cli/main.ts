// The `adopt` command line. Exit codes: 0 ok, 1 `--check` found changes, 2 bad usage or input.
import { Command, CommanderError } from 'commander';
import { AdoptError, formatDiagnostic } from '../diag.js';
import { explainCommand } from './explain.js';

export async function main(argv: string[]): Promise<number> {
  const program = new Command();
  let code = 0;
  program
    .name('adopt')
    .description('Reads PyTorch model source, shows what it computes, and rewrites it to use fast kernels.')
    .version('0.1.0')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });

  program
    .command('explain')
    .description('print the architecture DSL of every nn.Module in the given files or directories')
    .argument('<paths...>', 'Python files or directories')
    .option('--json', 'print the IR as JSON (schema: docs/ir-schema.md)')
    .option('--root <dir>', 'directory that imports resolve under (default: the top of the enclosing package)')
    .option('--max-file-size <MiB>', 'skip files larger than this', '8')
    .option('-o, --output <file>', 'write to a file instead of stdout')
    .action((paths: string[], opts) => { code = explainCommand(paths, opts); });

  try {
    await program.parseAsync(argv);
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    if (e instanceof AdoptError) {
      if (e.diagnostics.length) for (const d of e.diagnostics) process.stderr.write(`${formatDiagnostic(d)}\n`);
      else process.stderr.write(`adopt: ${e.message}\n`);
      return 2;
    }
    const err = e as Error;
    process.stderr.write(`adopt: internal error: ${err.message}\n`);
    if (process.env.ADOPT_DEBUG) process.stderr.write(`${err.stack}\n`);
    return 70;
  }
  return code;
}
