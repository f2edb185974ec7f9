// One exit-code policy for every command (documented in the README and docs/architecture.md):
//   0   done; every input file was read and analysed in full
//   1   a check found a difference: `rewrite --check` would change a file, `verify` or
//       `bench --verify` found a rewrite that computes something else
//   2   bad usage, or input that could not be used: a file missing, unreadable, not UTF-8, binary,
//       over the size limit or with a syntax error; no nn.Module or function in any input; or a
//       step that was asked for (verification, writing) could not run. What could be done for the
//       other files is still printed or written, and every file is named with its error.
//   70  an internal error (a bug in adopt)
export const EXIT = { ok: 0, differs: 1, input: 2, internal: 70 } as const;

export interface Outcome {
  /** Input files that could not be read or analysed in full. */
  inputErrors: number;
  /** No input holds anything to analyse. */
  empty: boolean;
  /** Files or writes that failed after analysis (synthesis, writing, verification unavailable). */
  failures?: number;
  /** A check found a difference (`--check` would change something; a mismatch). */
  differs?: boolean;
}

export function exitCode(o: Outcome): number {
  if (o.inputErrors || o.empty || o.failures) return EXIT.input;
  return o.differs ? EXIT.differs : EXIT.ok;
}

export const NOTHING_TO_ANALYSE = 'adopt: nothing to analyse: no nn.Module classes or functions in the input\n';
