import inspect

import pytest
import torch
from torch import nn

import adopt_kernels as ak


def takes(cls, name):
    return name in inspect.signature(cls.__init__).parameters


class PretendCuda(torch.Tensor):
    """A CPU tensor reporting itself as CUDA, to test the device rule without a GPU."""

    @property
    def is_cuda(self):
        return True


def model():
    return nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3))


@pytest.mark.parametrize("cls", [torch.optim.Adam, torch.optim.AdamW])
@pytest.mark.parametrize("form", ["list", "generator", "groups"])
def test_cpu_parameters_get_foreach(cls, form):
    net = model()
    params = {
        "list": list(net.parameters()),
        "generator": net.parameters(),
        "groups": [{"params": list(net[0].parameters())}, {"params": list(net[2].parameters()), "lr": 0.1}],
    }[form]
    assert ak.optimizer_kwargs(cls, params) == {"foreach": True}


def test_generator_is_not_consumed():
    net = model()
    params = net.parameters()
    ak.optimizer_kwargs(torch.optim.AdamW, params)
    assert len(list(params)) == 4


@pytest.mark.parametrize("cls", [torch.optim.Adam, torch.optim.AdamW])
def test_cuda_parameters_get_fused_when_the_class_takes_it(cls):
    params = [p.detach().as_subclass(PretendCuda) for p in model().parameters()]
    assert all(p.is_cuda for p in params)
    expected = {"fused": True} if takes(cls, "fused") else {"foreach": True}
    assert ak.optimizer_kwargs(cls, params) == expected


def test_fused_needs_every_parameter_on_cuda_and_floating():
    assert takes(torch.optim.Adam, "fused")  # since torch 1.13
    cuda = [p.detach().as_subclass(PretendCuda) for p in model().parameters()]
    assert ak.optimizer_kwargs(torch.optim.Adam, cuda) == {"fused": True}
    assert ak.optimizer_kwargs(torch.optim.Adam, cuda + [torch.zeros(3)]) == {"foreach": True}
    integer = torch.zeros(3, dtype=torch.long).as_subclass(PretendCuda)
    assert ak.optimizer_kwargs(torch.optim.Adam, cuda + [integer]) == {"foreach": True}
    # Device unknown without consuming the iterator: the device-independent choice.
    assert ak.optimizer_kwargs(torch.optim.Adam, iter(cuda)) == {"foreach": True}
    assert ak.optimizer_kwargs(torch.optim.Adam, [{"params": iter(cuda)}]) == {"foreach": True}


def test_other_optimizers_and_disabled(monkeypatch):
    params = list(model().parameters())
    assert ak.optimizer_kwargs(torch.optim.SGD, params) == {}
    assert ak.optimizer_kwargs("Adam", params) == {}

    class MyAdam(torch.optim.Adam):
        def __init__(self, params, lr=1e-3):
            super().__init__(params, lr=lr)

    assert ak.optimizer_kwargs(MyAdam, params) == {}
    monkeypatch.setenv("ADOPT_DISABLE", "fused_optimizer")
    assert ak.optimizer_kwargs(torch.optim.AdamW, params) == {}


@pytest.mark.parametrize("cls", [torch.optim.Adam, torch.optim.AdamW])
def test_kwargs_are_accepted_and_update_like_the_default(cls):
    torch.manual_seed(0)
    net = model().double()
    twin = model().double()
    twin.load_state_dict(net.state_dict())
    extra = ak.optimizer_kwargs(cls, list(twin.parameters()))
    assert extra
    plain = cls(net.parameters(), lr=0.01, weight_decay=0.1)
    tuned = cls(twin.parameters(), lr=0.01, weight_decay=0.1, **extra)
    x = torch.randn(4, 5, dtype=torch.float64)
    for _ in range(3):
        for net_, opt in ((net, plain), (twin, tuned)):
            opt.zero_grad()
            net_(x).pow(2).sum().backward()
            opt.step()
    for a, b in zip(net.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("cls", [ak.FusedAdam, ak.FusedAdamW])
def test_the_compiled_step_counts_as_an_in_place_change_of_the_parameters(cls):
    """A graph that saved a weight before the step cannot backpropagate through the new values:
    torch's step raises there (a GAN stepping its discriminator before the generator's
    backward), and so must the compiled one, whose writes autograd does not see by itself."""
    from adopt_kernels import _dispatch

    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(64, 64))
    x = torch.randn(8, 64, requires_grad=True)
    opt = cls([w], lr=0.1)
    loss = (x @ w).pow(2).sum()
    w.grad = torch.ones_like(w)
    before, calls = w._version, _dispatch.CALLS["adamw"]
    opt.step()
    assert _dispatch.CALLS["adamw"] == calls + 1, "the compiled step did not run"
    assert w._version > before
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_a_keyword_torchs_step_does_not_take_is_refused_as_torch_refuses_it():
    w = nn.Parameter(torch.randn(8))
    w.grad = torch.ones_like(w)
    for cls in (torch.optim.AdamW, ak.FusedAdamW):
        with pytest.raises(TypeError):
            cls([w], lr=0.1).step(no_such_keyword=1)
