// The syntax error of a parsed file as a diagnostic: its first ERROR or MISSING node.
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

/** The file's first syntax error, as Python reports only its first. tree-sitter recovers from an
 *  error by guessing where the broken statement ends, and what it reports after that guess is often
 *  a valid line misread (an unmatched `)` makes the next line an error too). */
export function collectSyntaxErrors(source: SourceText, root: ScanNode, out: Diagnostic[]): void {
  // a preorder walk, children left to right, meets nodes in the order they start in the file
  const stack: ScanNode[] = [root];
  while (stack.length) {
    const node = stack.pop()!;
    if (node.type === 'ERROR' || node.isMissing) {
      const p = posAt(source, node.startIndex);
      const snippet = source.text.slice(node.startIndex, Math.min(node.endIndex, node.startIndex + 30)).split('\n')[0];
      out.push({
        severity: 'error', code: 'syntax', file: source.path, line: p.line, col: p.col,
        message: node.isMissing ? `syntax error: missing '${node.type}'` : `syntax error near '${snippet}'`,
      });
      return;
    }
    if (!node.hasError) continue;
    for (let i = node.childCount - 1; i >= 0; i--) stack.push(node.child(i)!);
  }
}
