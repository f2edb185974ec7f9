// Canonical operation names: the many spellings of one tensor operation map to one op, so a
// rule's pattern matches them all (DESIGN §3).

/** Python operators to op names. */
export const BINARY_OPS: Record<string, string> = {
  '+': 'add', '-': 'sub', '*': 'mul', '/': 'div', '//': 'floordiv', '%': 'mod', '**': 'pow', '@': 'matmul',
  '&': 'and_', '|': 'or_', '^': 'xor', '<<': 'lshift', '>>': 'rshift',
};
export const UNARY_OPS: Record<string, string> = { '-': 'neg', '+': 'pos', '~': 'invert', not: 'not' };
export const COMPARE_OPS: Record<string, string> = {
  '<': 'lt', '<=': 'le', '>': 'gt', '>=': 'ge', '==': 'eq', '!=': 'ne', in: 'in', 'not in': 'notin', is: 'is', 'is not': 'isnot',
};

/** Aliases of torch functions and Tensor methods to one name. */
export const ALIASES: Record<string, string> = {
  bmm: 'matmul', mm: 'matmul', multiply: 'mul', divide: 'div', true_divide: 'div', subtract: 'sub',
  swapaxes: 'transpose', swapdims: 'transpose', concat: 'cat', concatenate: 'cat', absolute: 'abs',
  greater: 'gt', less: 'lt', mul_: 'mul_', clip: 'clamp',
};

/** Namespaces whose lower-case members are tensor operations. */
export const OP_NAMESPACES = ['torch.nn.functional', 'torch.special', 'torch', 'math'];

/** Tensor methods the analysis knows; anything else called on a value is an unknown method. */
export const TENSOR_METHODS = new Set(`
abs absolute acos bernoulli_ normal_ exponential_ random_ cauchy_ log_normal_ geometric_ masked_fill_ add_ copy_ zero_ add add_ addcmul addmm all allclose amax amin any apply_ argmax argmin argsort
baddbmm bernoulli bfloat16 bmm bool byte ceil chunk clamp clamp_ clamp_min clip clone contiguous copy_ cos cpu cuda
cumsum cumprod data_ptr detach detach_ diag diagonal diff dim div div_ double dtype element_size eq equal erf exp exp_ expand expand_as
fill_ fill_diagonal_ flatten flip float floor floor_divide fmod gather ge gelu get_device gt half index_add index_add_ index_copy index_fill index_put_ index_select int
is_contiguous is_floating_point isinf isnan item le lerp log log1p log_softmax logical_and logical_not logical_or logsumexp long lt
masked_fill masked_fill_ masked_scatter masked_select matmul max maximum mean min minimum mm mul mul_ narrow ndimension ne neg nelement new_empty new_full new_ones new_tensor new_zeros nonzero norm normal_ numel numpy
permute pow prod reciprocal relu relu_ repeat repeat_interleave requires_grad_ reshape reshape_as roll round rsqrt scatter scatter_ scatter_add sigmoid sign sin size softmax softplus sort split sqrt square squeeze squeeze_ std sub sub_ sum swapaxes swapdims t tanh tile to tolist topk transpose tril tril_ triu triu_ trunc type type_as unbind unflatten unfold uniform_ unique unsqueeze unsqueeze_ var view view_as where zero_ split_with_sizes stride storage_offset
`.trim().split(/\s+/));

/** Attributes of a tensor (not configuration): accessing them is dataflow from the tensor. */
export const TENSOR_ATTRS = new Set(['shape', 'dtype', 'device', 'ndim', 'T', 'mT', 'H', 'mH', 'is_cuda', 'requires_grad', 'data', 'grad', 'real', 'imag', 'layout', 'is_sparse']);

export const BUILTINS = new Set(`
abs all any bool callable dict divmod enumerate filter float format getattr hasattr hash id int isinstance issubclass iter len list map max min next object pow print range repr reversed round set setattr slice sorted str sum super tuple type vars zip ValueError TypeError RuntimeError NotImplementedError KeyError AttributeError IndexError AssertionError ImportError Exception warnings
`.trim().split(/\s+/));

/** Shorthand dtype casts as methods. */
export const CAST_METHODS: Record<string, string> = {
  float: 'torch.float32', half: 'torch.float16', double: 'torch.float64', bfloat16: 'torch.bfloat16',
  long: 'torch.int64', int: 'torch.int32', bool: 'torch.bool',
};

const DTYPE_NAMES = new Set(['float32', 'float', 'float16', 'half', 'bfloat16', 'float64', 'double', 'int64', 'long', 'int32', 'int', 'int8', 'uint8', 'bool', 'int16', 'complex64']);
export function isDtypeName(path: string): boolean {
  return path.startsWith('torch.') && DTYPE_NAMES.has(path.slice(6));
}

/**
 * Positional parameters (after the input tensor) that are moved to keywords, per op, so that
 * `softmax(x, -1)` and `softmax(x, dim=-1)` are one form. `F.` variants differ from `torch.`
 * and the Tensor method in a few places, keyed with an `F.` prefix.
 */
export const POSITIONAL_TO_KW: Record<string, string[]> = {
  softmax: ['dim', 'dtype'],
  'F.softmax': ['dim', '_stacklevel', 'dtype'],
  log_softmax: ['dim', 'dtype'],
  'F.log_softmax': ['dim', '_stacklevel', 'dtype'],
  dropout: ['p', 'train'],
  'F.dropout': ['p', 'training', 'inplace'],
  layer_norm: ['normalized_shape', 'weight', 'bias', 'eps'],
  'F.layer_norm': ['normalized_shape', 'weight', 'bias', 'eps'],
  gelu: ['approximate'],
  mean: ['dim', 'keepdim'],
  sum: ['dim', 'keepdim'],
  cat: ['dim'],
  stack: ['dim'],
  chunk: ['chunks', 'dim'],
  split: ['split_size_or_sections', 'dim'],
  cross_entropy: ['target', 'weight', 'size_average', 'ignore_index'],
  'F.cross_entropy': ['target', 'weight', 'size_average', 'ignore_index'],
  masked_fill: [],
};
/** `F.dropout` is called `training=`, `torch.dropout` `train=`: one keyword after canonicalising. */
export const KW_RENAMES: Record<string, Record<string, string>> = {
  dropout: { train: 'training' },
  'F.dropout': {},
};

/** `torch.cat`/`stack` take a list first: the list is the data and stays positional. */
export function canonicalName(name: string): string {
  return ALIASES[name] ?? name;
}
