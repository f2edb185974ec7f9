// Shortening a reason for a one-line report: what is left must still read as the message it was.

/** `text` in at most `max` characters, cut at a word with an ellipsis: a reason cut mid-word
 *  ("expected input wi") reads as a different message. */
export function clipWords(text: string, max: number): string {
  if (text.length <= max) return text;
  const cut = text.slice(0, max - 1);
  const space = cut.lastIndexOf(' ');
  return `${(space > max / 2 ? cut.slice(0, space) : cut).replace(/[\s,;:(]+$/, '')}…`;
}
