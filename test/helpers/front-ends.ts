// Differences between the syntax trees of the two front ends (the native walk's records and the
// cursor copy), shared by the tests that compare them.
import { parsePython, type SyntaxNode } from '../../src/parse/python.js';
import { sourceFromText } from '../../src/parse/source.js';

/** Differences between the trees of the two front ends (no native calls: cheap enough for many
 *  files), as readable lines. */
export function frontEndDifferences(text: string): string[] {
  const source = sourceFromText('<test>', text);
  const out: string[] = [];
  const stack: [SyntaxNode, SyntaxNode][] = [[parsePython(source, 'native').root, parsePython(source, 'cursor').root]];
  while (stack.length && out.length < 5) {
    const [a, b] = stack.pop()!;
    if (a.type !== b.type || a.isNamed !== b.isNamed || a.startIndex !== b.startIndex || a.endIndex !== b.endIndex || a.childCount !== b.childCount) {
      out.push(`${b.type}@${b.startIndex}-${b.endIndex} (${b.childCount} children) is ${a.type}@${a.startIndex}-${a.endIndex} (${a.childCount}) from the native walk`);
      continue;
    }
    for (let i = 0; i < a.childCount; i++) {
      if (a.fieldNameForChild(i) !== b.fieldNameForChild(i)) out.push(`${b.type}@${b.startIndex}: child ${i} has field ${b.fieldNameForChild(i)}, ${a.fieldNameForChild(i)} from the native walk`);
      stack.push([a.child(i)!, b.child(i)!]);
    }
  }
  return out;
}
