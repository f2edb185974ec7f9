import inspect

import torch

from .switches import enabled


def _accepts(optimizer_cls, name):
    try:
        return name in inspect.signature(optimizer_cls.__init__).parameters
    except (TypeError, ValueError):
        return False


def _tensors(params):
    """The tensors in ``params``, or None when they cannot be seen without consuming them.

    A one-shot iterator (``model.parameters()``) may be the very object handed to the
    optimizer, so it is never iterated here.
    """
    if isinstance(params, torch.Tensor):
        return [params]
    if not isinstance(params, (list, tuple)):
        return None
    tensors = []
    for item in params:
        if isinstance(item, dict):
            group = item.get("params")
            if isinstance(group, torch.Tensor):
                tensors.append(group)
            elif isinstance(group, (list, tuple)):
                tensors.extend(group)
            else:
                return None
        else:
            tensors.append(item)
    return tensors


def optimizer_kwargs(optimizer_cls, params):
    """Extra keyword arguments for a ``torch.optim.Adam``/``AdamW`` constructor.

    ``{'fused': True}`` when the class takes ``fused`` and every parameter is a floating-point
    CUDA tensor; else ``{'foreach': True}`` when the class takes ``foreach`` (it works on any
    device); else ``{}``. Other optimizer classes get ``{}``.
    """
    if not enabled("fused_optimizer"):
        return {}
    if not (isinstance(optimizer_cls, type) and issubclass(optimizer_cls, (torch.optim.Adam, torch.optim.AdamW))):
        return {}
    tensors = _tensors(params)
    if (
        tensors
        and _accepts(optimizer_cls, "fused")
        and all(isinstance(t, torch.Tensor) and t.is_cuda and t.is_floating_point() for t in tensors)
    ):
        return {"fused": True}
    if _accepts(optimizer_cls, "foreach"):
        return {"foreach": True}
    return {}


_MOMENTS = ("exp_avg", "exp_avg_sq")


def _is_number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _group_ok(group):
    """Group options the compiled step implements: plain Adam/AdamW with numeric hyperparameters."""
    if any(group.get(flag) for flag in ("amsgrad", "maximize", "capturable", "differentiable", "fused")):
        return False
    betas = group.get("betas")
    if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
        return False
    return all(_is_number(v) for v in (group.get("lr"), group.get("eps"), group.get("weight_decay"), *betas))


class _FusedAdamStep:
    """``step()`` through the compiled Adam kernel for each parameter group it can take: the
    C++ one for CPU tensors, the Triton one for CUDA tensors (a launch or two per dtype).

    A group whose options or tensors the kernels do not implement (amsgrad, maximize, float64,
    sparse gradients, CPU and CUDA tensors mixed, a switched-off kernel, no Triton) is stepped
    by the parent class exactly as torch would. State keys and formats are torch's, so
    checkpoints load both ways; bfloat16 (and float16) parameters keep float32 moments (torch
    would keep them in their own dtype).
    """

    _decoupled = False

    @torch.no_grad()
    def step(self, closure=None, **kwargs):
        if kwargs:
            # torch's own step takes what it takes (`grad_scaler=`) and refuses anything else
            return super().step(closure, **kwargs)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        rest = [group for group in self.param_groups if not self._fused_group_step(group)]
        if rest:
            self._parent_step(rest)
        return loss

    def _plan(self, group):
        """``{(device, dtype): (function, params)}`` when a kernel takes the whole group, else
        None: the compiled CPU step for CPU tensors, the Triton one for CUDA tensors."""
        from .. import _dispatch
        from ..kernels import adamw as kernel

        if not _group_ok(group):
            return None
        live = [p for p in group["params"] if p.grad is not None]
        gpu = _dispatch.on_gpu(*live)
        if live and not gpu and not _dispatch.native_ok(kernel.KERNEL, *live):
            return None
        if not all(kernel.tensor_ok(p, p.grad, self.state[p], gpu) for p in live):
            return None
        plan = {}
        for p in live:
            plan.setdefault((p.device, p.dtype), []).append(p)
        for key, params in plan.items():
            # without a schedule the dispatcher looks one up (for the device the step runs on)
            fn = kernel.step_function(key[1], kernel.workload_of(params), gpu=gpu)
            if fn is None:
                return None
            plan[key] = (fn, params)
        return plan

    def _fused_group_step(self, group):
        from ..kernels import adamw as kernel

        plan = self._plan(group)
        if plan is None:
            return False
        mode = kernel.mode_of(self._decoupled, group["weight_decay"])
        for fn, params in plan.values():
            states = [self._fused_state(p) for p in params]
            steps = []
            for state in states:
                state["step"] += 1
                steps.append(state["step"].item())
            grads = [p.grad if p.grad.is_contiguous() else p.grad.contiguous() for p in params]
            kernel.apply_step(fn, params, grads, [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states], steps,
                              group["lr"], tuple(group["betas"]), group["eps"], group["weight_decay"], mode)
            _mark_written(params)
        return True

    def _fused_state(self, p):
        """The parameter's state, created as torch creates it but with contiguous float32 moments."""
        state = self.state[p]
        if "step" not in state:
            state["step"] = torch.tensor(0.0)
        elif not torch.is_tensor(state["step"]):
            state["step"] = torch.tensor(float(state["step"]))
        for key in _MOMENTS:
            m = state.get(key)
            if m is None:
                state[key] = torch.zeros(p.shape, dtype=torch.float32, device=p.device)
            elif m.dtype != torch.float32 or not m.is_contiguous():
                state[key] = m.to(torch.float32).contiguous()
        return state

    def _parent_step(self, groups):
        """torch's own step over ``groups`` only, with moments in the parameters' dtype as it keeps them."""
        for group in groups:
            for p in group["params"]:
                state = self.state.get(p, {})
                for key in _MOMENTS:
                    m = state.get(key)
                    if torch.is_tensor(m) and p.is_floating_point() and m.dtype != p.dtype:
                        state[key] = m.to(p.dtype)
        saved = self.param_groups
        self.param_groups = groups
        try:
            super().step()
        finally:
            self.param_groups = saved

    def load_state_dict(self, state_dict):
        """torch's load, except that float32 moments of 16-bit parameters stay float32 (a float16
        second moment of ~1e-9 would underflow to 0)."""
        super().load_state_dict(state_dict)
        saved_ids = [i for g in state_dict["param_groups"] for i in g["params"]]
        params = [p for g in self.param_groups for p in g["params"]]
        for i, p in zip(saved_ids, params):
            saved = state_dict["state"].get(i, {})
            for key in _MOMENTS:
                m = saved.get(key)
                if p.dtype in (torch.bfloat16, torch.float16) and torch.is_tensor(m) and m.dtype == torch.float32 and p in self.state:
                    self.state[p][key] = m.to(p.device, copy=True)


class FusedAdam(_FusedAdamStep, torch.optim.Adam):
    """``torch.optim.Adam`` whose step is one compiled pass per parameter group (CPU or CUDA)."""


class FusedAdamW(_FusedAdamStep, torch.optim.AdamW):
    """``torch.optim.AdamW`` whose step is one compiled pass per parameter group (CPU or CUDA)."""

    _decoupled = True


_increment_version = getattr(getattr(torch.autograd, "graph", None), "increment_version", None)


def _mark_written(tensors):
    """Counts the kernel's writes as in-place changes, as torch's own step does: the compiled
    kernel writes through raw pointers, which autograd does not see, so a graph that saved a
    parameter before the step (a GAN stepping the discriminator before the generator's backward)
    would otherwise backpropagate through the new values instead of raising, as torch does. An
    in-place view to the same size, strides and offset changes nothing but the version."""
    with torch.no_grad():
        for t in tensors:
            if _increment_version is not None:
                _increment_version(t)
            else:
                t.as_strided_(t.size(), t.stride(), t.storage_offset())


def fused_optimizer_class(optimizer_cls):
    """``FusedAdam``/``FusedAdamW`` for exactly ``torch.optim.Adam``/``AdamW`` (and when the
    ``fused_optimizer`` switch is on), else ``optimizer_cls`` unchanged: subclasses may
    override the step and are left alone."""
    if not (enabled("native") and enabled("fused_optimizer")):
        return optimizer_cls
    return {torch.optim.Adam: FusedAdam, torch.optim.AdamW: FusedAdamW}.get(optimizer_cls, optimizer_cls)
