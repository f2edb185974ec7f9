"""The one list of adopt's kernels: name, API, switch, schedule space, reference, workload.

Each kernel module under ``adopt_kernels/kernels`` registers itself here. The rules, the
TypeScript side (``python -m adopt_kernels.cli registry`` prints the registry as JSON, kept in
``registry.json`` beside this file), the
harness's kernel-call counter, the tuner and ``adopt kernels build|status`` all read this
registry and nothing else.

A schedule space is data: parameters with their allowed values, a default, and constraints.
Constraints are expressions over the parameters and the workload's fields written in the
subset of syntax Python and JavaScript share (arithmetic, ``%``, comparisons; the list is a
conjunction), so both sides evaluate them the same way.
"""

import ast
import itertools
import math
import operator
import random
from dataclasses import dataclass, field
from typing import Callable, NamedTuple, Optional

from . import target

_BINOPS = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod, ast.Div: operator.truediv,
}
_CMPOPS = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.Eq: operator.eq, ast.NotEq: operator.ne,
}


def _evaluate(node, env):
    if isinstance(node, ast.Expression):
        return _evaluate(node.body, env)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return node.value
    if isinstance(node, ast.Name):
        if node.id not in env:
            raise KeyError(f"constraint names {node.id!r}, which is neither a parameter nor a workload field")
        return env[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return _BINOPS[type(node.op)](_evaluate(node.left, env), _evaluate(node.right, env))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_evaluate(node.operand, env)
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _CMPOPS:
        return _CMPOPS[type(node.ops[0])](_evaluate(node.left, env), _evaluate(node.comparators[0], env))
    raise ValueError(f"constraint syntax not allowed: {ast.dump(node)}")


def check_constraint(text, env):
    return bool(_evaluate(ast.parse(text, mode="eval"), env))


# the vector levels a schedule's default may depend on (``target.vector_level``)
VECTOR_LEVELS = ("avx2", "avx512")


def _host_level():
    return target.vector_level(target.cpu_identity()["flags"])


# omp_sched_t's values (OpenMP 3.0 on)
OMP_KINDS = {"static": 1, "dynamic": 2, "guided": 3}


@dataclass(frozen=True)
class Space:
    """The schedule parameters of one kernel template, as data."""

    params: dict  # name -> tuple of allowed values (ordered)
    default: dict
    constraints: tuple = ()
    # The OpenMP schedule is applied when a kernel is called (``schedule(runtime)`` in the
    # template), not rendered into its source: {"kind": param, "chunk": param or absent}. One
    # build then serves every kind and chunk, which keeps the tuner's compile count down.
    omp: dict = field(default_factory=dict)
    # Overrides of the default on targets of a vector level (``target.vector_level``): an
    # AVX-512 CPU runs 512-bit vectors where they pay. ``default`` is then this machine's default
    # (the kernels are built for the machine they run on); ``portable_default`` and these
    # overrides are what the registry's JSON carries, so it reads the same on every machine.
    # Levels do not stack: an "avx2" override does not reach AVX-512 CPUs unless repeated there.
    target_defaults: dict = field(default_factory=dict)
    # the vector level ``default`` is resolved for: "host" (this machine's), a level, or None
    # (the portable default)
    level: Optional[str] = "host"

    def __post_init__(self):
        if self.level not in ("host", None, *VECTOR_LEVELS):
            raise ValueError(f"level {self.level!r}: one of host, None, {', '.join(VECTOR_LEVELS)}")
        for level, overrides in self.target_defaults.items():
            if level not in VECTOR_LEVELS:
                raise ValueError(f"target default for {level!r}: levels are {', '.join(VECTOR_LEVELS)}")
            self._check_default({**self.default, **overrides}, f" on {level}")
        self._check_default(self.default)
        # ``default`` becomes the resolved one; the declared one is kept beside it (not a field:
        # build another Space from ``portable_default``, never from a resolved ``default``)
        object.__setattr__(self, "portable_default", dict(self.default))
        level = (_host_level() if self.target_defaults else None) if self.level == "host" else self.level
        object.__setattr__(self, "default", self.default_for(level))

    def _check_default(self, default, where=""):
        for name, value in default.items():
            if value not in self.params.get(name, ()):
                raise ValueError(f"default{where} {name}={value!r} is not among {self.params.get(name)}")
        for role, name in self.omp.items():
            if role not in ("kind", "chunk") or name not in self.params:
                raise ValueError(f"omp {role}={name!r}: roles are kind and chunk, each naming a parameter")
        if any(v not in OMP_KINDS for v in self.params.get(self.omp.get("kind"), ())):
            raise ValueError(f"an OpenMP kind is one of {', '.join(OMP_KINDS)}")

    def default_for(self, level):
        """The default on targets of ``level`` (None: the portable one)."""
        return {**self.portable_default, **self.target_defaults.get(level, {})}

    def compiled(self, schedule):
        """The parameters rendered into the source (the OpenMP schedule is applied at call time)."""
        runtime = set(self.omp.values())
        return {k: v for k, v in schedule.items() if k not in runtime}

    def omp_schedule(self, schedule):
        """(kind number as omp_sched_t, chunk) to set before a call, or None for a fixed schedule."""
        if "kind" not in self.omp:
            return None
        chunk = schedule.get(self.omp["chunk"], 0) if "chunk" in self.omp else 0
        return OMP_KINDS[schedule[self.omp["kind"]]], int(chunk)

    def legal(self, schedule, workload=None):
        if set(schedule) != set(self.params):
            return False
        # a value of the values' own type: 64.0 or True equal 64 and 1 in Python, but a schedule's
        # values are written into the kernel's C++ source as they are
        if any(not any(schedule[k] == x and type(schedule[k]) is type(x) for x in v) for k, v in self.params.items()):
            return False
        env = {**(workload or {}), **schedule}
        try:
            return all(check_constraint(c, env) for c in self.constraints)
        except KeyError:
            return False

    def enumerate(self, workload=None):
        names = list(self.params)
        for values in itertools.product(*(self.params[n] for n in names)):
            s = dict(zip(names, values))
            if self.legal(s, workload):
                yield s

    def sample(self, rng: random.Random, workload=None, tries=200):
        for _ in range(tries):
            s = {k: rng.choice(v) for k, v in self.params.items()}
            if self.legal(s, workload):
                return s
        return dict(self.default)

    def mutate(self, schedule, rng: random.Random, workload=None, tries=50):
        for _ in range(tries):
            name = rng.choice(list(self.params))
            s = dict(schedule, **{name: rng.choice(self.params[name])})
            if s != schedule and self.legal(s, workload):
                return s
        return dict(schedule)

    def default_at(self, workload=None):
        """The default as dispatch runs it at ``workload``: legalised where the workload's
        constraints forbid it (they name sizes, and no single schedule meets them at every size)."""
        return self.legalise(self.default, workload)

    def legalise(self, schedule, workload=None):
        """The legal schedule here nearest to ``schedule`` (taken from another shape).

        Distance: the log2 ratio for numeric parameters, 1 for a differing choice; ties go
        to the default's values. The default when nothing is legal.
        """
        # a schedule legal here is its own nearest: no need to walk the space (thousands of
        # points for the attention, milliseconds on the first call of every workload)
        if self.legal(schedule, workload):
            return dict(schedule)
        def distance(s):
            d = 0.0
            for name, v in s.items():
                want = schedule.get(name, self.default[name])
                if isinstance(v, (int, float)) and isinstance(want, (int, float)) and v > 0 and want > 0:
                    d += abs(math.log2(v) - math.log2(want))
                elif v != want:
                    d += 1.0
                if v != self.default[name]:
                    d += 1e-6
            return d

        best = min(self.enumerate(workload), key=distance, default=None)
        return dict(self.default) if best is None else best

    def to_json(self):
        out = {"params": {k: list(v) for k, v in self.params.items()}, "default": self.portable_default, "constraints": list(self.constraints)}
        if self.omp:
            out["omp"] = dict(self.omp)
        if self.target_defaults:
            out["target_defaults"] = {k: dict(v) for k, v in self.target_defaults.items()}
        return out


class CpuFloors(NamedTuple):
    """Where a compiled CPU call starts to pay, in bytes its forward moves: without autograd
    (``no_grad``, as generation runs) only the forward's fusion can repay the call's fixed cost;
    with it the backward's fusion gains too, so the kernel pays from smaller calls. Measured by
    ``npm run bench:crossover``."""

    inference: float
    training: float


@dataclass
class Kernel:
    """One kernel: what the rewritten code calls, how it is scheduled, what it must equal.

    ``make_case(workload, seed)`` builds inputs for a workload and returns ``(run, check)``:
    ``run(schedule)`` runs the compiled kernel (forward and backward where the kernel has one)
    and returns its outputs; ``check(outputs)`` raises if they differ from the reference. It is
    what the tuner's measurer and the benchmarks time.
    """

    name: str
    doc: str
    api: tuple  # public functions of adopt_kernels that dispatch to this kernel
    signature: dict  # api function -> its parameter names
    switch: str  # the ADOPT_DISABLE name
    space: Space
    workload_fields: tuple  # the numbers (and dtype) a workload is keyed by
    dtypes: tuple = ("float32", "bfloat16")
    render: Optional[Callable] = None  # (schedule, dtype) -> C++ source
    reference: Optional[Callable] = None
    make_case: Optional[Callable] = None
    bytes_moved: Optional[Callable] = None  # workload -> bytes a fused pass must move (forward)
    example_workloads: tuple = ()
    # The Triton kernel's schedule space (block sizes, num_warps, num_stages) when the kernel
    # has a GPU implementation in ``adopt_kernels.gpu.<name>``; data only, so reading the
    # registry never imports Triton.
    cuda_space: Optional[Space] = None
    # The smallest forward (bytes moved) for which the Triton kernel is launched on CUDA; smaller
    # calls run torch's own kernels. None: the dispatcher's default floor; 0: always.
    gpu_min_bytes: Optional[float] = None
    # The smallest call (bytes its forward moves) for which the compiled CPU kernel runs, in
    # inference and in training; smaller calls run the torch code, which has no fixed cost to pay
    # (``_dispatch.worth_a_call``). None: the dispatcher's default floors.
    cpu_min_bytes: Optional["CpuFloors"] = None
    # The workload fields that grow with the tokens (or parameters) a call handles: the axes
    # ``adopt_harness.crossover_bench`` scales down to find where the kernel starts to pay.
    size_axes: tuple = ()
    # Workload fields that make ``make_case`` an inference call (no dropout, say), where the
    # defaults make a training one: what the crossover benchmark times forward-only.
    inference_fields: dict = field(default_factory=dict)
    # workload -> why an inference CPU call of that shape runs the torch code at any size (a shape
    # with nothing for the fusion to remove), or None: read by the API function and the crossover
    # benchmark alike (``_dispatch.small``'s ``nothing_to_save``).
    inference_to_torch: Optional[Callable] = None
    extra: dict = field(default_factory=dict)
    # Workload fields that name a variant of the code rather than a size, with the values the
    # kernel's code dispatches on: what `adopt tune --shape` accepts for them.
    workload_choices: dict = field(default_factory=dict)

    @property
    def targets(self):
        return ("cpu", "cuda") if self.cuda_space is not None else ("cpu",)

    def space_for(self, device):
        """The schedule space on ``device`` ("cpu" or "cuda"); KeyError where there is none."""
        if device == "cpu":
            return self.space
        if device == "cuda" and self.cuda_space is not None:
            return self.cuda_space
        raise KeyError(f"kernel {self.name} has no {device} implementation")

    def source(self, schedule, dtype):
        """The C++ source of ``schedule``: schedules differing only in their OpenMP schedule share it."""
        return self.render(self.space.compiled(schedule), dtype)

    def to_json(self):
        return {
            "name": self.name,
            "doc": self.doc,
            "api": list(self.api),
            "signature": {k: list(v) for k, v in self.signature.items()},
            "switch": self.switch,
            "space": self.space.to_json(),
            **({"cuda_space": self.cuda_space.to_json()} if self.cuda_space is not None else {}),
            "workload_fields": list(self.workload_fields),
            **({"workload_choices": {k: list(v) for k, v in self.workload_choices.items()}} if self.workload_choices else {}),
            "dtypes": list(self.dtypes),
            "targets": list(self.targets),
            "example_workloads": list(self.example_workloads),
        }


KERNELS: dict = {}

# Switch names that are not compiled kernels: API functions whose fast path is a torch
# formulation (folded weights, stacked projections, a flag for the optimizer).
FORMULATIONS = {
    "conv_bn": ("conv_bn", "conv_bn_act", "FusedSequential"),
    "linear_bn": ("linear_bn", "FusedSequential"),
    "fused_qkv": ("fused_qkv",),
    "gated_mlp": ("gated_mlp",),
    "fused_optimizer": ("optimizer_kwargs", "fused_optimizer_class", "FusedAdam", "FusedAdamW"),
    "linear_cross_entropy": ("linear_cross_entropy",),
    "softmax": ("softmax",),
    "dropout_add_layer_norm": ("dropout_add_layer_norm",),
    "linear_gelu": ("linear_gelu",),
    "attention": ("attention",),
    "rms_norm": ("rms_norm", "rms_norm_variance_fp32"),
    "apply_rope": ("apply_rope",),
    "apply_rope_interleaved": ("apply_rope_interleaved",),
}


def register(kernel: Kernel):
    if kernel.name in KERNELS:
        raise ValueError(f"kernel {kernel.name!r} registered twice")
    KERNELS[kernel.name] = kernel
    return kernel


def switch_names():
    """Every name ``enabled`` and ``$ADOPT_DISABLE`` understand."""
    return tuple(sorted(set(FORMULATIONS) | {k.switch for k in KERNELS.values()} | {"native"}))


def kernel_functions():
    """The names of ``adopt_kernels`` that are a kernel or a formulation (what a rule's ``kernel``
    line may name), as opposed to its helpers (``enabled``, ``attention_supported``, ...)."""
    from . import kernels  # noqa: F401

    return tuple(sorted({n for apis in FORMULATIONS.values() for n in apis} | {n for k in KERNELS.values() for n in k.api}))


def fast_path_api():
    """The functions of ``adopt_kernels`` a rewritten fast path calls (classes and the
    optimizer's keyword helper excluded): counting calls to them shows the fast path ran."""
    return tuple(n for n in kernel_functions() if n[:1].islower() and n not in ("optimizer_kwargs", "fused_optimizer_class"))


def compiled_calls():
    """How many times a compiled kernel has run in this process, over all kernels."""
    from ._dispatch import CALLS

    return sum(CALLS.values())


def to_json():
    from . import kernels  # noqa: F401  (registers every kernel)

    import adopt_kernels

    return {
        "format": "adopt-kernel-registry/1",
        "switches": list(switch_names()),
        "public": sorted(adopt_kernels.__all__),
        "kernel_functions": list(kernel_functions()),
        "kernels": {name: k.to_json() for name, k in sorted(KERNELS.items())},
    }


if __name__ == "__main__":
    # run as a script this module is __main__, not the registry the kernels register with
    import json
    import sys

    from adopt_kernels.registry import to_json as _registry_json

    print(json.dumps(_registry_json(), sort_keys=True), file=sys.stdout)
