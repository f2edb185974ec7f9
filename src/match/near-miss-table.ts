// Near misses keyed by where they are (rule, file, line, column), in the order first seen, the
// last one found at a place kept. Every anchor op that does not complete a match leaves one, so
// places are keyed by nested maps rather than by a string built per miss.
import type { NearMiss } from './why-not.js';

/** Where a near miss or a site's first op is; `line` is undefined for a site without ops. */
export interface Place { rule: string; file: string; line: number | undefined; col: number | undefined }

export class PlaceTable<T> {
  private slots: T[] = [];
  private index = new Map<string, Map<string, Map<number | undefined, Map<number | undefined, number>>>>();

  set(at: Place, value: T): void {
    const cols = this.cols(at, true)!;
    const i = cols.get(at.col);
    if (i === undefined) { cols.set(at.col, this.slots.length); this.slots.push(value); } else this.slots[i] = value;
  }

  has(at: Place): boolean {
    return this.cols(at, false)?.has(at.col) ?? false;
  }

  /** The values in the order their places were first set. */
  values(): T[] {
    return [...this.slots];
  }

  private cols(at: Place, make: boolean): Map<number | undefined, number> | undefined {
    let files = this.index.get(at.rule);
    if (!files) { if (!make) return undefined; this.index.set(at.rule, (files = new Map())); }
    let lines = files.get(at.file);
    if (!lines) { if (!make) return undefined; files.set(at.file, (lines = new Map())); }
    let cols = lines.get(at.line);
    if (!cols) { if (!make) return undefined; lines.set(at.line, (cols = new Map())); }
    return cols;
  }
}

export type NearMissTable = PlaceTable<NearMiss>;
