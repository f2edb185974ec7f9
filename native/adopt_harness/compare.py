"""The one comparison policy: an error is measured relative to the tensor's largest magnitude, and
a difference below a floor (scaled by the largest gradient anywhere in the model) is rounding of a
value that is zero in exact arithmetic. One tolerance per dtype, the same for every entry point.
"""
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Policy:
    dtype: str
    # largest accepted error, as a share of the reference tensor's largest magnitude
    tol: float
    # absolute differences up to floor × scale count as zero
    floor: float


# float64 checks what a rewrite computes, so its tolerance is set by what an equivalent rewrite
# can differ by in float64 mode: reassociated float64 sums differ by about 1e-15, but code that
# casts to float32 on purpose (an RMSNorm or softmax upcast "to float32", RoPE tables) runs in
# float32 there, and on those paths the compiled kernels run too: up to 1.5e-7 measured over the
# fixture models. 1e-5 leaves a wide margin above that and is 30x below what exchanging exact and
# tanh GELU moves a tiny model's outputs (3e-4); float32's 1e-3 passed that change. bfloat16 keeps
# 8 bits of mantissa: one rounding is 4e-3 of a value, and a layer adds a few.
POLICIES = {
    "fp64": Policy("fp64", 1e-5, 1e-12),
    "fp32": Policy("fp32", 1e-3, 1e-5),
    "fp16": Policy("fp16", 1e-2, 1e-3),
    "bf16": Policy("bf16", 3e-2, 1e-2),
}
TORCH_DTYPES = {"fp64": torch.float64, "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_NAMES = {v: k for k, v in TORCH_DTYPES.items()}


def policy_for(dtype):
    """The policy of a dtype given as a name ('fp32') or a torch dtype."""
    name = dtype if isinstance(dtype, str) else _NAMES.get(dtype)
    if name not in POLICIES:
        raise ValueError(f"no comparison policy for dtype {dtype}: one of {', '.join(POLICIES)}")
    return POLICIES[name]


def scaled_error(a, b, policy, scale=None):
    """max |a - b| over max |b|, or 0 where the difference is under the policy's floor."""
    if not b.numel():
        return 0.0
    floor = policy.floor * (scale if scale is not None else 1.0)
    a, b = a.double(), b.double()
    diff = (a - b).abs().max()
    return 0.0 if diff.item() <= floor else (diff / b.abs().max().clamp_min(1e-12)).item()


def max_abs(a, b):
    return (a.double() - b.double()).abs().max().item() if a.numel() else 0.0


# Where the original's own float32 run is itself far from float64 (a gradient that is zero in
# exact arithmetic, summed from terms that cancel), a rewrite passes when it is no less accurate
# than the original within this factor, both measured against the original run in float64 (the
# policy the GPU kernel tests apply).
OWN_ERROR_FACTOR = 2.0


class Comparison:
    """Problems found comparing a rewrite's tensors with the original's, and the worst errors seen.
    `exact` (tag -> tensor or None) gives the original's result in float64 on the same inputs and
    weights, where a check in a lower precision has them; it is asked only for a tensor over the
    tolerance."""

    def __init__(self, policy):
        self.policy = policy
        self.problems = []
        self.max_abs = 0.0
        self.max_rel = 0.0
        self.exact = None
        self.within_own_error = []

    def tensor(self, tag, reference, rewritten, scale=None):
        """Compares one tensor; returns False when the shapes or finiteness differ."""
        if rewritten is None or reference is None:
            if (rewritten is None) != (reference is None):
                self.problems.append(f"{tag}: present on one side only")
            return reference is None and rewritten is None
        if tuple(reference.shape) != tuple(rewritten.shape):
            self.problems.append(f"{tag}: shape {tuple(rewritten.shape)}, the original's is {tuple(reference.shape)}")
            return False
        if torch.isfinite(reference).all() and not torch.isfinite(rewritten).all():
            self.problems.append(f"{tag}: non-finite values where the original's are finite")
            return False
        err = scaled_error(reference, rewritten, self.policy, scale)
        diff = max_abs(reference, rewritten)
        self.max_abs = max(self.max_abs, diff)
        self.max_rel = max(self.max_rel, err)
        if err > self.policy.tol:
            exact = self.exact(tag) if self.exact else None
            own = max_abs(reference, exact) if exact is not None and exact.shape == reference.shape else None
            if own is not None and max_abs(rewritten, exact) <= OWN_ERROR_FACTOR * own:
                self.within_own_error.append(tag)
                return True
            context = f"; the original's own error there against float64 is {own:.3g}" if own is not None else ""
            self.problems.append(f"{tag}: max abs error {diff:.3g} ({err:.2g} of its largest value, tolerance {self.policy.tol:g} in {self.policy.dtype}){context}")
        return True

    def gradients(self, mode, reference_grads, rewritten_model):
        """Every parameter gradient of the original (name → tensor or None) against the rewrite's,
        scaled by the largest gradient anywhere in the model."""
        scale = grad_scale(reference_grads.values())
        params = dict(rewritten_model.named_parameters())
        for name, g in reference_grads.items():
            q = params.get(name)
            if q is None:
                self.problems.append(f"{mode}: parameter {name} missing in the rewritten model")
                continue
            self.tensor(f"{mode} grad of {name}", g, q.grad, scale)
        return scale

    def summary(self):
        return {"max_abs": self.max_abs, "max_rel": self.max_rel, "tolerance": self.policy.tol}


def grad_scale(grads):
    return max([g.abs().max().item() for g in grads if g is not None and g.numel()] or [1.0])


def tensors(out):
    """Every floating-point tensor of a model's output, in order (ModelOutput, dict, tuple)."""
    if isinstance(out, torch.Tensor):
        return [out] if out.is_floating_point() else []
    if hasattr(out, "to_tuple"):
        out = out.to_tuple()
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in tensors(o)]
    return []


def slots(out):
    """Per floating-point tensor or None of a model's output, in order: whether it is a tensor. A
    rewrite that returns None where the original returns attention weights shows as False here."""
    if out is None:
        return [False]
    if isinstance(out, torch.Tensor):
        return [True] if out.is_floating_point() else []
    if hasattr(out, "to_tuple"):
        out = out.to_tuple()
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in slots(o)]
    return []


def first_tensor(out):
    found = tensors(out)
    return found[0] if found else None
