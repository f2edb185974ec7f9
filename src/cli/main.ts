// The `adopt` command line. Exit codes: 0 ok, 1 `--check` found changes, 2 bad usage or input.
import { Command, CommanderError } from 'commander';
import { AdoptError, formatDiagnostic } from '../diag.js';
import { benchCommand } from './bench.js';
import { explainCommand } from './explain.js';
import { kernelsCommand } from './kernels.js';
import { recordsCommand } from './records.js';
import { rewriteCommand } from './rewrite.js';
import { rulesCommand } from './rules.js';
import { tuneCommand } from './tune.js';
import { verifyCommand } from './verify.js';

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

  program
    .command('rewrite')
    .description('rewrite model source to use fused kernels; prints a unified diff by default')
    .argument('<paths...>', 'Python files or directories (a package is rewritten as a whole)')
    .option('--rules <dir|names>', 'a rules directory or file, or library rule names (comma-separated)')
    .option('--root <dir>', 'directory that imports resolve under')
    .option('--target <cpu|cuda>', 'the device the kernels are chosen for', 'cpu')
    .option('--diff', 'print a unified diff (the default)')
    .option('--in-place', 'rewrite the files atomically')
    .option('--backup', 'with --in-place, keep FILE.orig')
    .option('-o, --output <path>', 'write the rewritten file (or tree, for several inputs) here')
    .option('--json', 'print sites as JSON (rule, file, lines, bindings, guards, decision, reason)')
    .option('--check', 'exit 1 when something would change; write nothing')
    .option('--why-not', 'also report near misses and why they are not sites')
    .option('--verify', 'check each rule\'s rewrite in torch and time it; keep only rewrites that verify and are not slower')
    .option('--config <json>', 'with --verify: constructor arguments or config attributes of the tiny model')
    .option('--repeats <n>', 'with --verify: timed repeats (median)', undefined)
    .option('--no-learned', 'ignore what earlier --verify runs measured (.adopt/records.jsonl or $ADOPT_DB)')
    .action((paths: string[], opts) => { code = rewriteCommand(paths, opts); });

  program
    .command('verify')
    .description('check in torch that a rewritten file computes what the original does')
    .argument('<original>').argument('<rewritten>')
    .option('--class <name>', 'the nn.Module class to build in both files (default: every class)')
    .option('--shape <sizes>', 'input shape, e.g. 2,7,32 (default: found by the harness)')
    .option('--config <json>', 'constructor arguments or config attributes of the tiny model')
    .option('--dtype <fp32|fp64|fp16|bf16>', 'input and parameter dtype', 'fp32')
    .option('--json', 'print the result as JSON')
    .action((original: string, rewritten: string, opts) => { code = verifyCommand(original, rewritten, opts); });

  program
    .command('bench')
    .description('analyse, rewrite, score and optionally verify a whole corpus; writes JSON and an HTML report')
    .argument('[dir]', 'a directory of model files')
    .option('--hf [version]', 'the HF-199 corpus: transformers VERSION (default 4.35.0) from PyPI, scored against Adopter\'s ground truth')
    .option('--labels <path>', 'a directory of *.labels.json files to score sites against (default: DIR)')
    .option('--verify', 'verify every rewritten model in torch')
    .option('--report <file>', 'the HTML report (default: bench-results/…-report.html)')
    .option('--out <dir>', 'where results are written', 'bench-results')
    .option('--json', 'print the results as JSON')
    .action(async (dir: string | undefined, opts) => { code = await benchCommand(dir, opts); });

  const rules = program.command('rules').description('list, show, test and check rules');
  rules.command('list').option('--rules <dir>', 'rules directory').action((opts) => { code = rulesCommand('list', undefined, opts); });
  rules.command('show').argument('<name>').option('--rules <dir>', 'rules directory').action((name: string, opts) => { code = rulesCommand('show', name, opts); });
  rules.command('test').argument('[name]').option('--rules <dir>', 'rules directory').action((name: string | undefined, opts) => { code = rulesCommand('test', name, opts); });
  rules.command('check').argument('<file>').action((file: string) => { code = rulesCommand('check', file, {}); });

  const kernels = program.command('kernels').description('compile the kernels and show what the rewritten code would run');
  kernels.command('build').description('compile every kernel\'s default schedule into the kernel cache')
    .option('--target <cpu|cuda>', 'the device to build for', 'cpu')
    .option('--kernels <names>', 'only these kernels (comma-separated)')
    .option('--json', 'print the result as JSON')
    .action((opts) => { code = kernelsCommand('build', opts); });
  kernels.command('status').description('whether the kernels import in $ADOPT_PYTHON, which are compiled, and what each guard picks')
    .option('--json', 'print the result as JSON')
    .action((opts) => { code = kernelsCommand('status', opts); });

  program
    .command('tune')
    .description('tune the schedule of one kernel at one workload on this CPU (records in the user cache)')
    .argument('[model]', 'a model file (not built yet: use --kernel and --shape)')
    .option('--kernel <name>', 'the kernel (see adopt kernels status)')
    .option('--shape <sizes>', 'the workload, e.g. rows=4096,n=768')
    .option('--dtype <dtype>', 'float32 or bfloat16', undefined)
    .option('--target <cpu|cuda>', 'the device to tune for', 'cpu')
    .option('--budget <n>', 'measurements allowed (0: records only)', '32')
    .option('--strategy <name>', 'auto, guided, nearest, diffusion, random, grid, autotvm64, autotvm8', 'auto')
    .option('--db <file>', 'the record store (default: $ADOPT_DB or ~/.cache/adopt/records.jsonl)')
    .option('--schedules <file>', 'also write the result into this schedule file (adopt-schedules/1)')
    .option('--repeats <n>', 'timed repeats per schedule (median)')
    .option('--seed <n>', 'seed of the search', '0')
    .option('--force', 'measure even when an exact record exists')
    .option('--json', 'print the summary as JSON')
    .action(async (model: string | undefined, opts) => { code = await tuneCommand(model, opts); });

  const records = program.command('records').description('the tuner\'s record store: list or clear it');
  records.command('list').option('--db <file>', 'the record store').option('--json', 'print as JSON')
    .action((opts) => { code = recordsCommand('list', opts); });
  records.command('clear').option('--db <file>', 'the record store').action((opts) => { code = recordsCommand('clear', opts); });

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
