// The architecture DSL as data. `explain` prints it, the ohm grammar parses it back, and every
// later stage (match, synth, tune) consumes it. Field names are the JSON schema (docs/ir-schema.md).
import type { Diagnostic } from '../diag.js';

export interface Pos { line: number; col: number }

/** Source span: UTF-8 byte range plus 1-based line:col of both ends. `file` is set only when the
 *  span lies in another file than its module (code inlined from a helper elsewhere). */
export interface Span { file?: string; start: number; end: number; from: Pos; to: Pos }

export type Const = number | string | boolean | null;

export type Expr =
  | { k: 'ssa'; id: number }
  /** A dotted name: a parameter, `self.scale`, `config.hidden_act`, `torch.float32`. */
  | { k: 'name'; path: string }
  /** `raw` keeps a number's spelling (1e-12, 0x10) so printing is faithful. */
  | { k: 'const'; v: Const; raw?: string }
  | { k: 'tuple'; items: Expr[] }
  | { k: 'list'; items: Expr[] }
  | { k: 'dict'; items: [Expr, Expr][] }
  | { k: 'slice'; lo: Expr | null; hi: Expr | null; step: Expr | null }
  | { k: 'star'; e: Expr; double: boolean }
  /** Only in `init` values and guards: a nested constructor or function call. */
  | { k: 'call'; callee: string; args: Expr[]; kw: [string, Expr][] }
  | { k: 'index'; base: Expr; index: Expr }
  | { k: 'comp'; elt: Expr; v: string; iter: Expr }
  /** Code the analysis keeps as source text (lambdas, comprehensions in forward, ...). */
  | { k: 'opaque'; text: string };

/**
 * How a call was resolved:
 *  op      canonical tensor/torch/python operation (`softmax`, `matmul`, `add`, `view`)
 *  module  a call of a submodule (`self.dense(x)`, a ModuleList element); `type` lists its classes
 *  call    a resolved function or class that is not inlined (library code, constructors)
 *  unknown a callee the analysis could not resolve; `callee` is its source spelling
 */
export type OpKind = 'op' | 'module' | 'call' | 'unknown';

export interface Op {
  k: 'op';
  id: number;
  kind: OpKind;
  callee: string;
  args: Expr[];
  kw: [string, Expr][];
  type?: string[];
  span: Span;
  /** Qualified names of the helpers this op was inlined through, outermost first. */
  via?: string[];
  /** For inlined ops: the call in this method that the outermost helper was inlined at. */
  site?: Span;
  /** For the last element of an `nn.Sequential` called in this method (whose span is the
   *  element's constructor in `__init__`): the call, which gives the chain's value its name. */
  called?: Span;
}

export interface Phi { id: number; v: string; ins: Expr[] }

export interface IfStmt { k: 'if'; cond: Expr; then: Stmt[]; else: Stmt[]; phis: Phi[]; span: Span }
export interface ForStmt { k: 'for'; v: string; iter: Expr; type?: string[]; phis: Phi[]; body: Stmt[]; span: Span }
export interface ReturnStmt { k: 'return'; value: Expr | null; span: Span }
export interface NoteStmt { k: 'note'; text: string; span: Span }

export type Stmt = Op | IfStmt | ForStmt | ReturnStmt | NoteStmt;

export interface Param { name: string; default?: Expr; star?: '*' | '**' }

export interface Method {
  name: string;
  params: Param[];
  body: Stmt[];
  span: Span;
  /** Qualified decorator names (`torch.jit.script`, `staticmethod`), when any. */
  decorators?: string[];
}

export interface Attr {
  name: string;
  value: Expr;
  span: Span;
  /** Conditions under which __init__ sets it (from enclosing `if`s). */
  guard?: Expr[];
  /** The base class whose __init__ sets it, when inherited. */
  from?: string;
  /** Where the value is constructed when a factory function builds it (`return nn.Sequential(...)`). */
  built?: Span;
  /** Configuration fields the value reads and their defaults, where the parameter is annotated
   *  with a configuration class of the project (`config.bias` → False). */
  defaults?: [string, Expr][];
}

export interface ModuleIR {
  name: string;
  qualname: string;
  bases: string[];
  span: Span;
  attrs: Attr[];
  methods: Method[];
  /** Methods not defined here, taken from a base class: method name → defining class. */
  inherited: [string, string][];
}

export interface FileIR {
  path: string;
  module: string;
  modules: ModuleIR[];
  functions: Method[];
  diagnostics: Diagnostic[];
}

export interface Program { version: 1; root: string; files: FileIR[] }

export function spanFile(span: Span, owner: string): string {
  return span.file ?? owner;
}
