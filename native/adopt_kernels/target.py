"""The fingerprint of the machine kernels are built and tuned for.

Tuning records and schedule files carry it: a schedule measured on one CPU, compiler or torch
is never taken as this target's own.
"""

import functools
import hashlib
import os
import platform

import torch

from . import _build

_FLAGS_OF_INTEREST = ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_bf16", "amx_tile", "neon", "asimd", "sve")


@functools.lru_cache(maxsize=1)
def cpu_identity():
    """``{"model", "vendor", "flags"}`` of this CPU from ``/proc/cpuinfo`` (every flag; the
    platform's name and no flags where that file cannot be read)."""
    model, vendor, flags = "", "", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and value.strip():
                    model = value.strip()
                elif key == "vendor_id":
                    vendor = value.strip()
                elif key in ("flags", "Features"):
                    flags.update(value.split())
    except OSError:
        pass
    # platform.processor() runs a program on Linux: only where /proc/cpuinfo named no model
    return {"model": model or platform.processor() or platform.machine(), "vendor": vendor, "flags": frozenset(flags)}


def vector_level(flags):
    """The widest vectors the compiled kernels can use on a CPU with these flags: "avx512"
    (AVX-512F: 512-bit vectors and 32 registers), "avx2", or None. The TypeScript tuner resolves
    a schedule space's target defaults with the same rule (``vectorLevel`` in src/tune/space.ts)."""
    flags = set(flags)
    if "avx512f" in flags:
        return "avx512"
    return "avx2" if "avx2" in flags else None


def _cpu_info():
    info = cpu_identity()
    return info["model"], sorted(f for f in info["flags"] if f in _FLAGS_OF_INTEREST)


@functools.lru_cache(maxsize=1)
def native_bf16_products():
    """True where this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX): torch's bfloat16
    matmuls (oneDNN) use those instructions, while the compiled kernels compute in float32."""
    return bool({"avx512_bf16", "amx_tile"} & set(_cpu_info()[1]))


def fingerprint(device="cpu"):
    """A dict naming the target; ``key`` is a short hash of everything else in it."""
    if device == "cuda":
        from . import gpu

        if not torch.cuda.is_available() and gpu.interpreting():
            info = {"device": "cuda", "gpu": "Triton interpreter (CPU)", "torch": torch.__version__}
            info["key"] = hashlib.sha256(repr(sorted(info.items())).encode()).hexdigest()[:16]
            return info
        if not torch.cuda.is_available():
            raise RuntimeError("no CUDA device: cannot fingerprint target 'cuda'")
        props = torch.cuda.get_device_properties(0)
        try:
            import triton

            triton_version = triton.__version__
        except ImportError:
            triton_version = None
        info = {
            "device": "cuda", "gpu": props.name, "capability": f"{props.major}.{props.minor}",
            "triton": triton_version, "torch": torch.__version__,
        }
    else:
        model, flags = _cpu_info()
        info = {
            "device": "cpu", "cpu": model, "flags": flags, "cores": os.cpu_count(),
            "compiler": _build.compiler_identity(_build.compiler()), "torch": torch.__version__,
        }
    info["key"] = hashlib.sha256(repr(sorted(info.items())).encode()).hexdigest()[:16]
    return info
