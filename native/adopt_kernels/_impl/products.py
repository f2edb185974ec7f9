"""What a matrix product would give, without computing one."""

import torch

# the dtypes autocast casts (float64 and integer tensors keep theirs)
_AUTOCAST_ELIGIBLE = (torch.float32, torch.float16, torch.bfloat16)


def _autocast_dtype(device_type):
    """The dtype autocast gives matmul on ``device_type``, False when autocast is off there,
    None when this torch cannot say (another device type on an older release)."""
    try:
        if hasattr(torch, "get_autocast_dtype"):  # torch >= 2.4 takes the device type
            return torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else False
        if device_type == "cuda":
            return torch.get_autocast_gpu_dtype() if torch.is_autocast_enabled() else False
        if device_type == "cpu":
            return torch.get_autocast_cpu_dtype() if torch.is_autocast_cpu_enabled() else False
    except (RuntimeError, TypeError, AttributeError):
        pass
    return None


def product_dtype(a, b):
    """``torch.matmul(a, b).dtype`` (also bmm/baddbmm's), read from the operands and the autocast
    state instead of a product computed for it: rewritten code that needs only the scores' dtype
    (``torch.finfo(scores.dtype).min``) launches nothing for it."""
    if a.dtype == b.dtype:
        if a.dtype not in _AUTOCAST_ELIGIBLE:
            return a.dtype
        autocast = _autocast_dtype(a.device.type)
        if autocast is False:
            return a.dtype
        if autocast is not None:
            return autocast
    # mixed dtypes (which matmul refuses) or an autocast state this torch cannot report: a
    # one-element product says, raising where the original would
    return torch.matmul(a[..., :1, :], b[..., :, :1]).dtype
