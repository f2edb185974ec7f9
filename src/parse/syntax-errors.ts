// Syntax errors of a parsed file as diagnostics: every ERROR and MISSING node, in file order.
import type { Diagnostic } from '../diag.js';
import { posAt, type SourceText } from './source.js';

/** What the scan reads of a node: tree-sitter's own nodes have this shape, and so do the native
 *  walk's records (FlatTree.scanNode). */
export interface ScanNode {
  readonly type: string;
  readonly startIndex: number;
  readonly endIndex: number;
  readonly isMissing: boolean;
  readonly hasError: boolean;
  readonly childCount: number;
  child(i: number): ScanNode | null;
}

const MAX_SYNTAX_REPORTS = 50;

export function collectSyntaxErrors(source: SourceText, root: ScanNode, out: Diagnostic[]): void {
  const stack: ScanNode[] = [root];
  while (stack.length && out.length < MAX_SYNTAX_REPORTS) {
    const node = stack.pop()!;
    if (node.type === 'ERROR' || node.isMissing) {
      const p = posAt(source, node.startIndex);
      const snippet = source.text.slice(node.startIndex, Math.min(node.endIndex, node.startIndex + 30)).split('\n')[0];
      out.push({
        severity: 'error', code: 'syntax', file: source.path, line: p.line, col: p.col,
        message: node.isMissing ? `syntax error: missing '${node.type}'` : `syntax error near '${snippet}'`,
      });
      if (node.type === 'ERROR') continue;
    }
    if (!node.hasError) continue;
    for (let i = node.childCount - 1; i >= 0; i--) stack.push(node.child(i)!);
  }
  out.sort((a, b) => a.line - b.line || a.col - b.col);
  if (out.length >= MAX_SYNTAX_REPORTS) {
    out.push({ severity: 'note', code: 'syntax', file: source.path, line: out[out.length - 1].line, col: 1, message: `further syntax errors not listed (limit ${MAX_SYNTAX_REPORTS})` });
  }
}
