"""Attention with the masks rewritten models pass, eager vs SDPA per backend, on a CUDA GPU.

Usage: python3 scripts/sdpa-masks.py   (prints one JSON line per case; medians of CUDA-event timings)
"""
import json
import math

import torch
import torch.nn.functional as F


def eager(q, k, v, mask, scale):
    s = torch.matmul(q, k.transpose(-2, -1)) * scale
    if mask is not None:
        s = s + mask
    return torch.matmul(F.softmax(s.float(), dim=-1).to(q.dtype), v)


def timed(fn, reps=50):
    for _ in range(5):
        fn()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return sorted(times)[len(times) // 2]


def main():
    dev, dt = "cuda", torch.bfloat16
    backends = {}
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
        backends = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
                    "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}
    except ImportError:
        sdpa_kernel = None
    for name, (b, h, l, d), mask_shape, scale in [
        ("t5-small bias", (8, 8, 512, 64), (8, 8, 512, 512), 1.0),
        ("t5-small bias", (8, 8, 128, 64), (8, 8, 128, 128), 1.0),
        ("gpt2 causal additive", (8, 12, 512, 64), (1, 1, 512, 512), 0.125),
        ("gpt2 causal additive", (8, 12, 128, 64), (1, 1, 128, 128), 0.125),
        ("gpt2 is_causal", (8, 12, 512, 64), None, 0.125),
        ("bert padding", (8, 12, 512, 64), (8, 1, 1, 512), 0.125),
    ]:
        q, k, v = (torch.randn(b, h, l, d, device=dev, dtype=dt) for _ in range(3))
        mask = None if mask_shape is None else torch.randn(mask_shape, device=dev, dtype=dt)
        causal = mask_shape is None
        row = {"case": name, "shape": [b, h, l, d], "eager_ms": timed(lambda: eager(q, k, v, mask, scale))}
        row["sdpa_default_ms"] = timed(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, scale=scale))
        for bname, be in backends.items():
            try:
                with sdpa_kernel([be]):
                    row[f"{bname}_ms"] = timed(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, scale=scale))
            except RuntimeError as e:
                row[f"{bname}_ms"] = f"n/a ({str(e).splitlines()[0][:60]})"
        print(json.dumps({k: (round(x, 4) if isinstance(x, float) else x) for k, x in row.items()}), flush=True)


if __name__ == "__main__":
    main()
