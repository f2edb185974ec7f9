// A module-level attention function that returns its probabilities beside its output, as
// current Hugging Face model files write `eager_attention_forward(module, query, key, value,
// attention_mask, scaling, dropout, **kwargs)` and pick it from a table of implementations
// (`ALL_ATTENTION_FUNCTIONS`) whose other entries return None in the weights' place. Who reads the
// weights is not visible in the function: its callers return them on, and the model's callers (or
// output-capturing hooks) want them only when they ask for attentions. They ask through the
// keyword arguments that reach the function (`output_attentions=True` passed down in `**kwargs`)
// or through the model's configuration (`config.output_attentions`). So the fast path runs when
// neither asks, and gives None in the weights' place; otherwise the original code runs.
// Callers in the file must not stand in the way: each must pass its own `output_attentions` on,
// and read the weights only by returning them or under that flag. A file whose models collect
// outputs with `@capture_outputs` (transformers 5) takes the flag out of the keywords at the
// model's entry and records the weights with hooks on the attention modules while a collector is
// active: there the fast path also asks the collector (`_adopt.outputs_recorded("attentions")`).
// A caller that still takes the flag must pass it on even there: whoever calls that caller with
// `output_attentions=True` expects the weights back.
import type { SyntaxNode } from '../parse/python.js';
import { KERNELS_ALIAS } from './edits.js';
import { identifierNodes, lineAt, readCondition, type SynthFile } from './source.js';

const RETURN_LIST = new Set(['expression_list', 'tuple']);
const FLAG = 'output_attentions';
/** A decorator that records module outputs with hooks (`transformers.utils.output_capturing`). */
const CAPTURE = /^\s*@capture_outputs\b/m;

/** The condition under which callers want `name` (returned by module-level function `fn`), as a
 *  Python expression the fast path's guard negates; or why the rewrite cannot know it. */
export function functionWeightsWanted(f: SynthFile, fn: SyntaxNode, reads: SyntaxNode[], name: string): { cond: string } | string {
  const list = reads[0]?.parent;
  const ret = list?.parent;
  if (!ret || ret.type !== 'return_statement' || !list || !RETURN_LIST.has(list.type)) return `'${name}' is returned in an expression`;
  if (reads.some((r) => r.parent !== list) || ret.parent?.parent !== fn) return `'${name}' is read elsewhere than in the function's final return`;
  const holder = fn.parent?.type === 'decorated_definition' ? fn.parent : fn;
  const fnName = fn.childForFieldName('name')!.text;
  if (holder.parent?.type !== 'module') return `'${name}' is returned by ${fnName}, a function nested in another`;
  const params = fn.childForFieldName('parameters')!.namedChildren;
  // `**kwargs`, or `**kwargs: Unpack[...]` (a typed parameter around the splat)
  const splatOf = (p: SyntaxNode) => (p.type === 'typed_parameter' ? p.namedChildren[0] : p);
  const splat = params.map(splatOf).find((p) => p?.type === 'dictionary_splat_pattern')?.namedChildren.find((c) => c.type === 'identifier')?.text;
  if (!splat) return `${fnName} returns '${name}' and takes no **kwargs through which a caller could ask for it`;
  // a model that takes the flag out of the keywords it passes down (`kwargs.pop("output_attentions")`)
  // asks for the weights in a way the function cannot see
  const capture = CAPTURE.test(f.source.text);
  const dropped = capture ? null : new RegExp(`\\.pop\\(\\s*['"]${FLAG}['"]|del\\s+\\w+\\[\\s*['"]${FLAG}['"]`).exec(f.source.text);
  if (dropped) return `the file takes ${FLAG} out of the keywords at line ${lineAt(f.source, dropped.index)}, so ${fnName} cannot tell when its weights are asked for`;
  const items = list.namedChildren.filter((c) => c.type !== 'comment');
  const index = items.findIndex((c) => c.startIndex === reads[0].startIndex);
  for (const call of callsOf(f, fn, fnName)) {
    const problem = callerProblem(f, call, index, items.length, capture);
    if (problem) return `${fnName}'s caller at line ${lineAt(f.source, call.startIndex)} ${problem}`;
  }
  // transformers names the module the attention runs for `module`: its configuration may ask
  const first = params[0];
  const module = first?.type === 'identifier' ? first.text : first?.type === 'typed_parameter' ? first.namedChildren[0]?.text : undefined;
  const fromConfig = module === 'module' ? ` or getattr(getattr(module, "config", None), "${FLAG}", False)` : '';
  // the guard's terms may come before its `_adopt is not None`
  const recorded = capture ? ` or (${KERNELS_ALIAS} is not None and ${KERNELS_ALIAS}.outputs_recorded("attentions"))` : '';
  return { cond: `(${splat}.get("${FLAG}")${fromConfig}${recorded})` };
}

/** The calls of `fn` in the file: by its name, or through a local variable assigned from an
 *  expression naming it (`attention_interface = TABLE.get(impl, fn)`). */
function callsOf(f: SynthFile, fn: SyntaxNode, fnName: string): SyntaxNode[] {
  const calls: SyntaxNode[] = [];
  for (const ref of identifierNodes(f.root)) {
    if (ref.text !== fnName || ref.parent === fn) continue;
    if (ref.parent?.type === 'call' && ref.parent.childForFieldName('function') === ref) { calls.push(ref.parent); continue; }
    let a: SyntaxNode | null = ref.parent;
    while (a && a.type !== 'assignment' && a.type !== 'function_definition' && a.type !== 'module') a = a.parent;
    const target = a?.type === 'assignment' ? a.childForFieldName('left') : null;
    let scope: SyntaxNode | null = a;
    while (scope && scope.type !== 'function_definition') scope = scope.parent;
    if (target?.type !== 'identifier' || !scope) continue;
    const visit = (n: SyntaxNode) => {
      if (n.type === 'call' && n.childForFieldName('function')?.type === 'identifier' && n.childForFieldName('function')!.text === target.text) calls.push(n);
      n.namedChildren.forEach(visit);
    };
    visit(scope);
  }
  return calls;
}

/** What makes one caller read the weights when it did not ask for them; undefined when nothing. */
function callerProblem(f: SynthFile, call: SyntaxNode, index: number, count: number, capture: boolean): string | undefined {
  let fn: SyntaxNode | null = call.parent;
  while (fn && fn.type !== 'function_definition') fn = fn.parent;
  if (!fn) return 'calls it outside a function';
  const args = call.childForFieldName('arguments');
  const passed = args?.namedChildren.find((a) => a.type === 'keyword_argument' && a.childForFieldName('name')?.text === FLAG)?.childForFieldName('value')?.text;
  const params = fn.childForFieldName('parameters')!.namedChildren;
  const ownFlag = params.some((p) => (p.type === 'identifier' ? p.text : p.namedChildren[0]?.text) === FLAG);
  // even where hooks record the weights, a direct caller that passes the flag expects them back
  if (ownFlag && passed === undefined) return `takes ${FLAG} and does not pass it on${capture ? ' (a caller passing it expects the weights back, which the fast path cannot see)' : ''}`;
  const parent = call.parent;
  if (parent?.type === 'return_statement') return undefined;
  if (parent?.type !== 'assignment' || parent.childForFieldName('right') !== call) return 'uses its result in an expression';
  const left = parent.childForFieldName('left');
  const targets = left && ['pattern_list', 'tuple_pattern'].includes(left.type) ? left.namedChildren : [];
  if (targets.length !== count || targets[index]?.type !== 'identifier') return 'does not unpack its result';
  const target = targets[index].text;
  if (target === '_') return undefined;
  const isWrite = (n: SyntaxNode) => n.parent?.type === 'pattern_list' || n.parent?.type === 'tuple_pattern' || (n.parent?.type === 'assignment' && n.parent.childForFieldName('left') === n);
  for (const r of identifierNodes(fn).filter((n) => n.text === target && n.startIndex >= parent.endIndex && !isWrite(n))) {
    // returned as it is, alone or as an element of the returned tuple
    const up = r.parent && RETURN_LIST.has(r.parent.type) ? r.parent.parent : r.parent;
    if (up?.type === 'return_statement') continue;
    if (passed !== undefined && readCondition(r, fn) === passed) continue;
    return `reads '${target}' at line ${lineAt(f.source, r.startIndex)} other than by returning it or under ${FLAG}`;
  }
  return undefined;
}
