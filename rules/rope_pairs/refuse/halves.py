import torch


def rotate_halves_as_pairs(x, cos, sin):
    """The first and second halves, not the even and odd channels: the half-split layout."""
    d = x.shape[-1] // 2
    x1 = x[..., :d]  # refuse: not the even and odd channels
    x2 = x[..., d:]
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    return out.flatten(-2)
