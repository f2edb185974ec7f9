import { analyzePaths } from '../analysis/analyze.js';
import { formatDiagnostic } from '../diag.js';
import { maxFileSizeBytes } from '../parse/limits.js';
import { printProgram } from '../dsl/print.js';
import { writeOutput } from './output.js';

export interface ExplainOptions { json?: boolean; root?: string; maxFileSize?: string; output?: string }

export function explainCommand(paths: string[], opts: ExplainOptions): number {
  const { program } = analyzePaths(paths, { root: opts.root, maxBytes: maxFileSizeBytes(opts.maxFileSize) });
  let unreadable = 0;
  for (const f of program.files) {
    for (const d of f.diagnostics) if (d.severity !== 'note' || program.files.length === 1) process.stderr.write(`${formatDiagnostic(d)}\n`);
    if (f.diagnostics.some((d) => d.severity === 'error' && !['syntax', 'analysis'].includes(d.code))) unreadable++;
  }
  writeOutput(opts.output, opts.json ? JSON.stringify(program, null, 1) + '\n' : printProgram(program));
  const nothing = program.files.every((f) => f.modules.length === 0 && f.functions.length === 0);
  if (nothing) process.stderr.write('adopt: nothing to analyse: no nn.Module classes or functions in the input\n');
  return unreadable > 0 || nothing ? 2 : 0;
}
