// Rewritten code with the wrapping the synthesiser adds undone (`if (` + one condition a line +
// `):`, a call's arguments on lines of their own), so a test can look for a guard or a kernel
// call as one line. Only blocks that mention adopt's kernels are joined: the model's own code
// stays as written.
export function unwrapped<T>(text: T): T {
  if (typeof text !== 'string') return text;
  const lines = text.split('\n');
  const out: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const joined = joinFrom(lines, i);
    if (joined) { out.push(joined.line); i = joined.last; } else out.push(lines[i]);
  }
  return out.join('\n') as T;
}

/** The block opened by a line ending in `(` at `i`, joined into one line, when it mentions
 *  `_adopt`; nested blocks are joined first. */
function joinFrom(lines: string[], i: number): { line: string; last: number } | undefined {
  const open = lines[i];
  if (!open.endsWith('(')) return undefined;
  const indent = /^\s*/.exec(open)![0];
  const items: string[] = [];
  for (let j = i + 1; j < lines.length; j++) {
    const l = lines[j];
    if (l.startsWith(`${indent})`)) {
      const body = items.join(' ').replace(/,$/, '');
      if (!/\b_adopt\b/.test(body + open)) return undefined;
      const line = open.trimEnd() === `${indent}if (` && l.trim() === '):' ? `${indent}if ${body}:` : `${open}${body}${l.trim()}`;
      return { line, last: j };
    }
    if (!l.startsWith(`${indent} `)) return undefined;
    const nested = joinFrom(lines, j);
    if (nested) { items.push(nested.line.trim()); j = nested.last; } else items.push(l.trim());
  }
  return undefined;
}
