import torch


def softmax(x, dim=-1, dtype=None):
    """Replaces ``torch.softmax(x, dim=dim, dtype=dtype)`` (and ``F.softmax``/``x.softmax``).

    The reference implementation is torch's own; a fused last-dimension kernel will slot in
    here, which is why a positive ``dim`` naming the last axis is normalised first.
    """
    if dim < 0:
        dim += x.dim()
    if x.dim() > 0 and dim == x.dim() - 1:
        dim = -1
    return torch.softmax(x, dim=dim, dtype=dtype)
