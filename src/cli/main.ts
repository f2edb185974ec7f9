// The `adopt` command line: options and subcommands. Exit codes follow one policy (./policy.ts).
import { Command, CommanderError, Option } from 'commander';
import { AdoptError, formatDiagnostic } from '../diag.js';
import { benchCommand } from './bench.js';
import { explainCommand } from './explain.js';
import { kernelsCommand } from './kernels.js';
import { EXIT } from './policy.js';
import { recordsCommand } from './records.js';
import { placed } from './rule-errors.js';
import { rewriteCommand } from './rewrite.js';
import { collectRules, NO_BUILTIN_RULES_HELP, registerRulesCommands, RULES_HELP, WHY_NOT_ALL } from './rules.js';
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
    .option('--rules <names|paths>', RULES_HELP, collectRules)
    .option('--no-builtin-rules', NO_BUILTIN_RULES_HELP)
    .option('--root <dir>', 'directory that imports resolve under')
    .option('--max-file-size <MiB>', 'skip files larger than this', '8')
    .option('--in-place', 'rewrite the files atomically')
    .option('--backup', 'with --in-place, keep FILE.orig')
    .option('-o, --output <path>', 'write the rewritten file (or tree, for several inputs) here')
    .option('--json', 'print sites as JSON (rule, file, lines, bindings, guards, decision, reason)')
    .option('--check', 'exit 1 when something would change; write nothing')
    .option('--why-not', 'also report near misses, closest first: the close ones (--why-not=all: every one)')
    .addOption(new Option(WHY_NOT_ALL).hideHelp())
    .option('--verify', 'check each rule\'s rewrite in torch and time it; keep only rewrites that verify and are not slower')
    .option('--config <json>', 'with --verify: constructor arguments or config attributes of the tiny model')
    .option('--repeats <n>', 'with --verify: timed repeats (median; 0: verify without timing, so no rewrite is dropped as slower)', undefined)
    .option('--shape <CLASS=sizes>', 'with --verify: the input shape of a class the harness cannot find one for, e.g. Block=2,16,32 (repeatable)', (v: string, prev: string[] = []) => [...prev, v])
    .option('--no-learned', 'ignore what earlier --verify runs measured on this machine (adopt records list shows it)')
    .option('--tune', 'tune the kernels of the kept rewrites for this CPU at the model\'s real size; the schedules go to adopt-schedules.json beside the module, which it loads')
    .option('--budget <n>', 'with --tune: measurements per workload (0: records only; default 16)')
    .option('--batch <n>', 'with --tune: batch size of the run that finds the workloads (default 4)')
    .option('--seq <n>', 'with --tune: its sequence length (default 512)')
    .option('--tune-config <json>', 'with --tune: config attributes or constructor arguments over the config class\'s defaults')
    .option('--class <name...>', 'with --tune: the model class(es) to run (default: the outermost that build)')
    .option('--strategy <name>', 'with --tune: the search strategy (as for adopt tune; default auto)')
    .option('--db <file>', 'with --tune: the record store (default: $ADOPT_DB or ~/.cache/adopt/records.jsonl)')
    .action(async (paths: string[], opts) => { code = await rewriteCommand(paths, opts); });

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
    .option('--labels <path>', 'a directory of model files whose label markers (# site RULE ...) sites are scored against (default: DIR)')
    .option('--verify', 'verify every rewritten model in torch')
    .option('--report <file>', 'the HTML report (default: bench-results/…-report.html)')
    .option('--out <dir>', 'where results are written', 'bench-results')
    .option('--json', 'print the results as JSON')
    .action(async (dir: string | undefined, opts) => { code = await benchCommand(dir, opts); });

  registerRulesCommands(program, (c) => { code = c; });

  const kernels = program.command('kernels').description('compile the kernels and show what the rewritten code would run');
  kernels.command('build').description('compile every kernel\'s default schedule into the kernel cache')
    .option('--target <cpu|cuda>', 'the device to build for', 'cpu')
    .option('--kernels <names>', 'only these kernels (comma-separated)')
    .option('--python <path>', 'the Python to build for (default $ADOPT_PYTHON or /usr/bin/python3)')
    .option('--json', 'print the result as JSON')
    .action((opts) => { code = kernelsCommand('build', opts); });
  kernels.command('status').description('whether the kernels import in $ADOPT_PYTHON, which are compiled, and what each guard picks')
    .option('--python <path>', 'the Python the rewritten code runs under (default $ADOPT_PYTHON or /usr/bin/python3)')
    .option('--json', 'print the result as JSON')
    .action((opts) => { code = kernelsCommand('status', opts); });

  registerTuneCommands(program, (c) => { code = c; });

  try {
    // `--why-not=all` is its own flag: an optional value would swallow the path after --why-not
    await program.parseAsync(argv.map((a) => (a === '--why-not=all' ? WHY_NOT_ALL : a)));
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? EXIT.ok : EXIT.input;
    if (e instanceof AdoptError) {
      if (e.diagnostics.length) for (const d of placed(e)) process.stderr.write(`${formatDiagnostic(d)}\n`);
      else process.stderr.write(`adopt: ${e.message}\n`);
      return EXIT.input;
    }
    const err = e as Error;
    process.stderr.write(`adopt: internal error: ${err.message}\n`);
    if (process.env.ADOPT_DEBUG) process.stderr.write(`${err.stack}\n`);
    return EXIT.internal;
  }
  return code;
}

/** `adopt tune` and `adopt records`: the tuner and its record store. */
function registerTuneCommands(program: Command, done: (code: number) => void): void {
  program
    .command('tune')
    .description('tune kernel schedules on this CPU: every workload a model\'s rewritten code runs, or one kernel at one workload (records in the user cache)')
    .argument('[model]', 'a model file or package: its rewritten code is run once at its real size to find the workloads')
    .option('--config <json>', 'with a model: config attributes or constructor arguments over the config class\'s defaults')
    .option('--batch <n>', 'with a model: batch size of the run that finds the workloads', '4')
    .option('--seq <n>', 'with a model: sequence length of that run', '512')
    .option('--class <name...>', 'with a model: the model class(es) to run (default: the outermost that build)')
    .option('--threads <n>', 'with a model: torch and kernel threads for finding workloads')
    .option('--rules <rules>', 'with a model: the rules to rewrite with (as for adopt rewrite)')
    .option('--kernel <name>', 'the kernel (see adopt kernels status)')
    .option('--shape <sizes>', 'the workload, e.g. rows=4096,n=768')
    .option('--dtype <dtype>', 'float32 or bfloat16 (float16 too with --target cuda): with --kernel, the workload\'s; with a model, the dtype it runs in (default: float32 on the CPU, bfloat16 with --target cuda)', undefined)
    .option('--target <cpu|cuda>', 'the device to tune for', 'cpu')
    .option('--budget <n>', 'measurements allowed per workload (0: records only)', '32')
    .option('--strategy <name>', 'auto, guided, nearest, diffusion, random, grid, autotvm64, autotvm8', 'auto')
    .option('--db <file>', 'the record store (default: $ADOPT_DB or ~/.cache/adopt/records.jsonl)')
    .option('--schedules <file>', 'also write the result into this schedule file (adopt-schedules/1)')
    .option('--repeats <n>', 'timed repeats per schedule (median)')
    .option('--seed <n>', 'seed of the search', '0')
    .option('--force', 'measure even when an exact record exists')
    .option('--json', 'print the summary as JSON')
    .action(async (model: string | undefined, opts) => { done(await tuneCommand(model, opts)); });

  const records = program.command('records').description('the tuner\'s record store: list or clear it');
  records.command('list').option('--db <file>', 'the record store').option('--json', 'print as JSON')
    .action((opts) => { done(recordsCommand('list', opts)); });
  records.command('clear').description('remove records: all of them, or those matching every filter given')
    .option('--db <file>', 'the record store')
    .option('--kernel <name>', 'tuning records of this kernel')
    .option('--rule <name>', 'rewrite --verify speed records of this rule')
    .option('--file <path>', 'rewrite --verify speed records of this model file')
    .option('--target <key>', 'records of this target (a tuning target key, or cpu/cuda for speed records)')
    .action((opts) => { done(recordsCommand('clear', opts)); });
}
