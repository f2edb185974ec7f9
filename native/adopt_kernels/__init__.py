"""Fused kernels called by code that ``adopt`` rewrites.

Every call site sits behind a guard that falls back to the original code. Each function
computes exactly what the original composition of PyTorch ops computes (within floating-point
tolerance): through a compiled kernel (``adopt_kernels.kernels``, generated C++ with OpenMP,
built on first use) where one takes the tensors at hand, else through faster formulations from
plain torch ops where they exist, else through the original ops. Set
``ADOPT_DISABLE=name[,name...]`` (or ``all``) to turn kernels off at run time, and
``ADOPT_KEEP_FREED_MEMORY=1`` to have malloc keep freed blocks for reuse (``memory``), and
``ADOPT_QUIET_BLAS_THREADS=1`` to have OpenBLAS's idle threads sleep instead of spin
(``idle_threads``), and ``ADOPT_BLAS_CORE=1`` to have an OpenBLAS that mistook the CPU run the
kernels of its instruction set (``blas_core``).
"""

from ._impl.attention import attention, attention_supported
from ._impl.batch_norm import FusedSequential, conv_bn, conv_bn_act, linear_bn
from ._impl.cross_entropy import linear_cross_entropy
from ._impl.dropout_layer_norm import dropout_add_layer_norm
from ._impl.gelu import gelu_kind, linear_gelu
from ._impl.loss_helpers import causal_lm_loss
from ._impl.modules import built_as, built_with, runs_its_forward
from ._impl.optim import FusedAdam, FusedAdamW, fused_optimizer_class, optimizer_kwargs
from ._impl.products import product_dtype
from ._impl.projections import fused_qkv, gated_act, gated_mlp
from ._impl.recorded import outputs_recorded
from ._impl.rms_norm import rms_norm, rms_norm_variance_fp32
from ._impl.rope import apply_rope, apply_rope_interleaved
from ._impl.softmax import softmax
from ._impl.switches import enabled

AVAILABLE = True
__version__ = "0.1.0"

from . import kernels as _kernels  # noqa: E402,F401  (registers the compiled kernels)
from .registry import switch_names as _switch_names  # noqa: E402
from .memory import from_environment as _memory_from_environment  # noqa: E402
from .memory import keep_freed_memory  # noqa: E402
from .idle_threads import from_environment as _idle_threads_from_environment  # noqa: E402
from .idle_threads import quiet_blas_threads  # noqa: E402
from .blas_core import from_environment as _blas_core_from_environment  # noqa: E402
from .blas_core import match as match_blas_core  # noqa: E402
from .schedules import use as use_schedules  # noqa: E402

_memory_from_environment()
_idle_threads_from_environment()
_blas_core_from_environment()

# The names ``enabled`` and ``$ADOPT_DISABLE`` understand, from the kernel registry: one per
# kernel, plus ``native`` (every compiled kernel; the torch formulations still run).
KERNELS = _switch_names()

__all__ = [
    "AVAILABLE",
    "KERNELS",
    "FusedAdam",
    "FusedAdamW",
    "FusedSequential",
    "__version__",
    "apply_rope",
    "apply_rope_interleaved",
    "attention",
    "attention_supported",
    "built_as",
    "built_with",
    "causal_lm_loss",
    "conv_bn",
    "conv_bn_act",
    "dropout_add_layer_norm",
    "enabled",
    "fused_optimizer_class",
    "fused_qkv",
    "gated_act",
    "gated_mlp",
    "gelu_kind",
    "keep_freed_memory",
    "linear_bn",
    "linear_cross_entropy",
    "linear_gelu",
    "match_blas_core",
    "optimizer_kwargs",
    "outputs_recorded",
    "product_dtype",
    "quiet_blas_threads",
    "rms_norm",
    "rms_norm_variance_fp32",
    "runs_its_forward",
    "softmax",
    "use_schedules",
]
