// A tensor passed to a helper of the same file that reads nothing of it but its dtype and device
// (timm's `resolve_self_attn_mask(N, attn, attn_mask, is_causal)`, which builds a mask with
// `attn.new_full(...)` and `dtype=attn.dtype`): the call may take any tensor of that dtype and
// device in its place.
import type { SyntaxNode } from '../parse/python.js';
import { identifierNodes } from './source.js';

/** Methods of a tensor whose result depends on its dtype and device only (the size is given). */
const KIND_ONLY = new Set(['dtype', 'device', 'new_full', 'new_zeros', 'new_ones', 'new_empty', 'new_tensor']);

/** Whether `arg`, an argument of a call to a module-level function of the file, is read there
 *  only for its dtype and device. */
export function readsOnlyKind(root: SyntaxNode, arg: SyntaxNode): boolean {
  const list = arg.parent;
  const call = list?.type === 'argument_list' ? list.parent : null;
  const fn = call?.type === 'call' ? call.childForFieldName('function') : null;
  if (!list || fn?.type !== 'identifier') return false;
  const position = list.namedChildren.filter((c) => c.type !== 'comment').indexOf(arg);
  if (position < 0 || list.namedChildren.slice(0, position).some((c) => c.type === 'list_splat' || c.type === 'dictionary_splat' || c.type === 'keyword_argument')) return false;
  const defs = root.namedChildren.map((c) => (c.type === 'decorated_definition' ? c.childForFieldName('definition') : c))
    .filter((c): c is SyntaxNode => c?.type === 'function_definition' && c.childForFieldName('name')?.text === fn.text);
  if (defs.length !== 1) return false;
  const param = defs[0].childForFieldName('parameters')?.namedChildren.filter((c) => c.type !== 'comment')[position];
  const name = param?.type === 'identifier' ? param.text : param?.type === 'typed_parameter' || param?.type === 'typed_default_parameter' || param?.type === 'default_parameter' ? param.namedChildren[0]?.text : undefined;
  const body = defs[0].childForFieldName('body');
  if (!name || !body) return false;
  const uses = identifierNodes(body).filter((n) => n.text === name);
  return uses.every((n) => {
    const p = n.parent;
    if (p?.type !== 'attribute' || p.childForFieldName('object')?.startIndex !== n.startIndex) return false;
    const attr = p.childForFieldName('attribute')?.text ?? '';
    return KIND_ONLY.has(attr) && (attr === 'dtype' || attr === 'device' || p.parent?.type === 'call');
  });
}
