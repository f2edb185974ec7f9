// Diagnostics shared by every stage. A diagnostic always names a place (file:line:col) so the
// user can jump to it; stages collect them instead of throwing, and only the CLI decides exit codes.

export type Severity = 'error' | 'warning' | 'note';

export interface Diagnostic {
  severity: Severity;
  /** Stable machine-readable code, e.g. `syntax`, `encoding`, `import-unresolved`. */
  code: string;
  file: string;
  line: number;
  col: number;
  message: string;
}

export function formatDiagnostic(d: Diagnostic): string {
  return `${d.file}:${d.line}:${d.col}: ${d.severity}: ${d.message} [${d.code}]`;
}

/** An error that stops a command: bad usage or input where nothing can be done (exit 2). */
export class AdoptError extends Error {
  constructor(message: string, readonly diagnostics: Diagnostic[] = []) {
    super(message);
    this.name = 'AdoptError';
  }
}
