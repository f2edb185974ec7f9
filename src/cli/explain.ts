import { formatDiagnostic } from '../diag.js';
import { maxFileSizeBytes } from '../parse/limits.js';
import { printProgram, programJsonChunks } from '../dsl/print.js';
import { analyse, inputErrors, isEmptyProgram } from '../pipeline/index.js';
import { writeOutput } from './output.js';
import { exitCode, NOTHING_TO_ANALYSE } from './policy.js';

export interface ExplainOptions { json?: boolean; root?: string; maxFileSize?: string; output?: string }

export function explainCommand(paths: string[], opts: ExplainOptions): number {
  const program = analyse(paths, { root: opts.root, maxBytes: maxFileSizeBytes(opts.maxFileSize) });
  for (const f of program.files) {
    for (const d of f.diagnostics) if (d.severity !== 'note' || program.files.length === 1) process.stderr.write(`${formatDiagnostic(d)}\n`);
  }
  writeOutput(opts.output, opts.json ? programJsonChunks(program) : printProgram(program));
  const empty = isEmptyProgram(program);
  if (empty) process.stderr.write(NOTHING_TO_ANALYSE);
  return exitCode({ inputErrors: [...inputErrors(program).values()].filter(Boolean).length, empty });
}
