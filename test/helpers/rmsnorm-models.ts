// RMSNorm classes that differ only in the cast of the normalised value and in the reduction's dims:
// shared by test/unit/rmsnorm-casts.test.ts (what the rmsnorm rule matches and refuses) and
// test/rmsnorm-casts.test.ts (the rewritten classes run in torch against the originals).

const norm = (name: string, cast: string, mean = 'mean(-1, keepdim=True)', extra = '') => `

class ${name}(nn.Module):
    def __init__(self, dim=32, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim) + 0.25 * torch.randn(dim))
        self.eps = eps
        self.norm_dim = -1

    def forward(self, x):
        input_dtype = x.dtype${extra}
        h = x.to(torch.float32)
        variance = h.pow(2).${mean}
        h = h * torch.rsqrt(variance + self.eps)
        return self.weight * ${cast}
`;

/** Cast back to the input's own dtype: the rmsnorm rule rewrites these. */
export const RMS_REWRITTEN = ['SavedDtype', 'DtypeKeyword', 'DtypeOfInput', 'TypeAs', 'DimAttr', 'LastDimTuple'];
/** Cast to another dtype: near misses. */
export const RMS_CAST_REFUSED = ['WeightDtype', 'Bf16Out', 'HalfOut', 'FloatOut', 'OtherDtype'];
/** A reduction over the last two dims: a near miss. */
export const RMS_TWO_DIMS = 'TwoDims';

export const RMS_CAST_MODELS = `import torch
from torch import nn
${[
  norm('SavedDtype', 'h.to(input_dtype)'),
  norm('DtypeKeyword', 'h.to(dtype=input_dtype)'),
  norm('DtypeOfInput', 'h.to(x.dtype)'),
  norm('TypeAs', 'h.type_as(x)'),
  norm('DimAttr', 'h.to(input_dtype)', 'mean(self.norm_dim, keepdim=True)'),
  norm('LastDimTuple', 'h.to(input_dtype)', 'mean((-1,), keepdim=True)'),
  norm('WeightDtype', 'h.to(self.weight.dtype)'),
  norm('Bf16Out', 'h.to(torch.bfloat16)'),
  norm('HalfOut', 'h.half()'),
  norm('FloatOut', 'h.float()'),
  norm('OtherDtype', 'h.to(other)', 'mean(-1, keepdim=True)', '\n        other = self.weight.dtype'),
  norm(RMS_TWO_DIMS, 'h.to(input_dtype)', 'mean(dim=(-2, -1), keepdim=True)'),
].join('')}`;
