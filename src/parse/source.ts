// Reading a Python source file into text, with every way that can fail turned into a diagnostic.
import { isUtf8 } from 'node:buffer';
import { readFileSync, statSync } from 'node:fs';
import type { Diagnostic } from '../diag.js';
import { DEFAULT_MAX_MIB, sizeRefusal } from './limits.js';

export interface Pos { line: number; col: number }

export interface SourceText {
  path: string;
  text: string;
  /** UTF-16 index of the first character of each line. */
  lineStarts: number[];
  /** For non-ASCII text: UTF-8 byte offset of each UTF-16 index (length text.length + 1). */
  byteOffsets?: Uint32Array;
  encoding: string;
}

export const DEFAULT_MAX_BYTES = DEFAULT_MAX_MIB * 1024 * 1024;

export type ReadResult = { ok: true; source: SourceText; notes: Diagnostic[] } | { ok: false; diagnostic: Diagnostic };

function fail(path: string, code: string, message: string, line = 1, col = 1): ReadResult {
  return { ok: false, diagnostic: { severity: 'error', code, file: path, line, col, message } };
}

// PEP 263: an encoding declaration on line 1 or 2.
const CODING_RE = /^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)/;

function declaredEncoding(bytes: Buffer): string | undefined {
  const head = bytes.subarray(0, 400).toString('latin1').split(/\r?\n/, 2);
  for (const line of head) {
    const m = CODING_RE.exec(line);
    if (m) return pythonCodecToWhatwg(m[1].toLowerCase().replace(/_/g, '-'));
  }
  return undefined;
}

// Python codec names that WHATWG's TextDecoder spells differently.
function pythonCodecToWhatwg(name: string): string {
  const aliases: Record<string, string> = { 'latin-1': 'latin1', 'iso-latin-1': 'latin1', l1: 'latin1', cp1252: 'windows-1252', 'utf8': 'utf-8', 'ascii': 'utf-8', 'us-ascii': 'utf-8' };
  return aliases[name] ?? name;
}

function positionOfByte(bytes: Buffer, offset: number): Pos {
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < offset; i++) if (bytes[i] === 0x0a) { line++; lineStart = i + 1; }
  return { line, col: offset - lineStart + 1 };
}

/** Index of the first byte that breaks UTF-8, or -1. */
function firstInvalidUtf8(bytes: Buffer): number {
  let i = 0;
  const n = bytes.length;
  while (i < n) {
    const b = bytes[i];
    if (b < 0x80) { i++; continue; }
    let need: number;
    if (b >= 0xc2 && b <= 0xdf) need = 1;
    else if (b >= 0xe0 && b <= 0xef) need = 2;
    else if (b >= 0xf0 && b <= 0xf4) need = 3;
    else return i;
    if (i + need >= n) return i;
    for (let k = 1; k <= need; k++) {
      const c = bytes[i + k];
      if (c === undefined || (c & 0xc0) !== 0x80) return i;
    }
    i += need + 1;
  }
  return -1;
}

const NON_ASCII = /[^\x00-\x7f]/;

export function sourceFromText(path: string, text: string, encoding = 'utf-8'): SourceText {
  // native searches: a loop over every character code costs more than the two of them
  const lineStarts = [0];
  for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', nl + 1)) lineStarts.push(nl + 1);
  const source: SourceText = { path, text, lineStarts, encoding };
  if (NON_ASCII.test(text)) {
    const offsets = new Uint32Array(text.length + 1);
    let b = 0;
    for (let i = 0; i < text.length; i++) {
      offsets[i] = b;
      const c = text.charCodeAt(i);
      if (c < 0x80) b += 1;
      else if (c < 0x800) b += 2;
      else if (c >= 0xd800 && c <= 0xdbff) { b += 4; offsets[++i] = b; continue; }
      else b += 3;
    }
    offsets[text.length] = b;
    source.byteOffsets = offsets;
  }
  return source;
}

export function readSource(path: string, maxBytes = DEFAULT_MAX_BYTES): ReadResult {
  let bytes: Buffer;
  try {
    const st = statSync(path);
    if (st.isDirectory()) return fail(path, 'is-directory', 'is a directory, not a Python file');
    const tooLarge = sizeRefusal(st.size, maxBytes);
    if (tooLarge) return fail(path, 'too-large', tooLarge);
    bytes = readFileSync(path);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT') return fail(path, 'missing', 'no such file');
    if (err.code === 'EACCES') return fail(path, 'unreadable', 'permission denied');
    return fail(path, 'unreadable', `cannot read: ${err.message}`);
  }
  const notes: Diagnostic[] = [];
  const probe = bytes.subarray(0, 8192);
  const nul = probe.indexOf(0);
  if (nul >= 0) {
    const p = positionOfByte(bytes, nul);
    return fail(path, 'binary', 'binary file (NUL byte), not Python source', p.line, p.col);
  }
  let start = 0;
  if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) start = 3;
  const body = bytes.subarray(start);
  const declared = declaredEncoding(body);
  let text: string;
  let encoding = 'utf-8';
  if (declared && !/^utf-?8/.test(declared)) {
    try {
      text = new TextDecoder(declared, { fatal: true }).decode(body);
      encoding = declared;
    } catch (e) {
      return fail(path, 'encoding', `cannot decode as declared encoding '${declared}': ${(e as Error).message}`);
    }
  } else {
    // the native check first: nearly every file is valid, and the scan below only says where not
    const bad = isUtf8(body) ? -1 : firstInvalidUtf8(body);
    if (bad >= 0) {
      const p = positionOfByte(body, bad);
      return fail(path, 'encoding', `invalid UTF-8 byte 0x${body[bad].toString(16).padStart(2, '0')} (declare the encoding with a '# -*- coding: ... -*-' line)`, p.line, p.col);
    }
    text = body.toString('utf8');
  }
  if (text.trim() === '') notes.push({ severity: 'note', code: 'empty', file: path, line: 1, col: 1, message: 'empty file: nothing to analyse' });
  return { ok: true, source: sourceFromText(path, text, encoding), notes };
}

export function posAt(src: SourceText, index: number): Pos {
  const ls = src.lineStarts;
  let lo = 0, hi = ls.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (ls[mid] <= index) lo = mid; else hi = mid - 1;
  }
  return { line: lo + 1, col: index - ls[lo] + 1 };
}

export function byteAt(src: SourceText, index: number): number {
  return src.byteOffsets ? src.byteOffsets[index] : index;
}
