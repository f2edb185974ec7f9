"""`built_with`: the guard a rewrite puts on a module it computes without calling (an attention's
nn.Softmax, an LM head's loss). It must pass for the module as __init__ built it and fail for
every later change that would make the baked-in computation wrong."""
import pytest
import torch
from torch import nn

import adopt_kernels as ak


class _RecordingSoftmax(nn.Softmax):
    def forward(self, x):
        return super().forward(x)


class _SameForwardOtherDim(nn.Softmax):
    def __init__(self):
        super().__init__(dim=1)


def _hooked():
    m = nn.Softmax(dim=-1)
    m.register_forward_hook(lambda mod, i, o: None)
    return m


def _set(mod, **attrs):
    for k, v in attrs.items():
        setattr(mod, k, v)
    return mod


def test_a_module_as_built_passes_with_its_arguments_by_keyword_or_position():
    assert ak.built_with(nn.Softmax(dim=-1), "torch.nn.Softmax", dim=-1)
    assert ak.built_with(nn.Softmax(-1), "torch.nn.Softmax", -1)
    assert ak.built_with(nn.CrossEntropyLoss(), "torch.nn.CrossEntropyLoss")
    assert ak.built_with(nn.CrossEntropyLoss(ignore_index=-100, reduction="sum"), "torch.nn.CrossEntropyLoss", reduction="sum")
    assert ak.built_with(nn.Softmax(dim=-1), nn.Softmax, dim=-1)  # a class of the rewritten file, by reference


@pytest.mark.parametrize(
    "mod, qualname, kwargs",
    [
        (_set(nn.Softmax(dim=-1), dim=1), "torch.nn.Softmax", {"dim": -1}),
        (nn.Softmax(dim=1), "torch.nn.Softmax", {"dim": -1}),
        (_RecordingSoftmax(dim=-1), "torch.nn.Softmax", {"dim": -1}),
        (_SameForwardOtherDim(), "torch.nn.Softmax", {"dim": -1}),
        (_hooked(), "torch.nn.Softmax", {"dim": -1}),
        (nn.Identity(), "torch.nn.Softmax", {"dim": -1}),
        (_set(nn.CrossEntropyLoss(), ignore_index=0), "torch.nn.CrossEntropyLoss", {}),
        (_set(nn.CrossEntropyLoss(), reduction="sum"), "torch.nn.CrossEntropyLoss", {}),
        (_set(nn.CrossEntropyLoss(), label_smoothing=0.1), "torch.nn.CrossEntropyLoss", {}),
        (_set(nn.CrossEntropyLoss(), weight=torch.ones(3)), "torch.nn.CrossEntropyLoss", {}),
        (_set(nn.CrossEntropyLoss(), extra=torch.ones(1)), "torch.nn.CrossEntropyLoss", {}),
        (nn.CrossEntropyLoss(), "torch.nn.NoSuchLoss", {}),
        (nn.Softmax(dim=-1), "torch.nn.Softmax", {"no_such_argument": 1}),
    ],
    ids=["dim set later", "built otherwise", "subclass with its own forward", "subclass built otherwise", "hooked",
         "another module", "ignore_index set later", "reduction set later", "label smoothing set later",
         "class weights set later", "an attribute added", "unknown class", "arguments the class refuses"],
)
def test_every_change_the_rewrite_did_not_see_fails_the_guard(mod, qualname, kwargs):
    assert not ak.built_with(mod, qualname, **kwargs)


def test_training_mode_is_not_a_setting():
    assert ak.built_with(nn.Softmax(dim=-1).eval(), "torch.nn.Softmax", dim=-1)


def test_a_setting_from_init_s_scope_is_taken_as_the_module_holds_it_and_the_rest_still_compared():
    loss = nn.CrossEntropyLoss(ignore_index=7)
    assert ak.built_with(loss, "torch.nn.CrossEntropyLoss", as_set=("ignore_index",))
    loss.ignore_index = 3  # the rewrite reads it off the module too
    assert ak.built_with(loss, "torch.nn.CrossEntropyLoss", as_set=("ignore_index",))
    loss.label_smoothing = 0.1
    assert not ak.built_with(loss, "torch.nn.CrossEntropyLoss", as_set=("ignore_index",))
    assert not ak.built_with(nn.Softmax(dim=-1), "torch.nn.Softmax", as_set=("no_such_setting",))


class Softmax(nn.Module):
    """A project's own class named as torch's, with a learned temperature."""

    def __init__(self, dim=-1):
        super().__init__()
        self.dim = dim
        self.t = nn.Parameter(torch.tensor(0.5))

    def forward(self, x):
        return torch.softmax(x / self.t, dim=self.dim)


class OwnNorm(nn.Module):
    def __init__(self, eps=1e-6):
        super().__init__()
        self.eps = eps


def test_a_project_class_named_as_a_torch_class_is_not_stood_in_for():
    # a pattern naming torch's Softmax matched it by its name alone
    assert not ak.built_with(Softmax(dim=-1), Softmax, dim=-1)
    # a project class with a name of its own is the one a project's rule means
    assert ak.built_with(OwnNorm(eps=1e-6), OwnNorm, eps=1e-6)
