import sys
import types
from contextvars import ContextVar

import adopt_kernels as ak
from adopt_kernels._impl.recorded import CAPTURING_MODULE


def _capturing(monkeypatch, collector):
    module = types.ModuleType(CAPTURING_MODULE)
    if collector is not None:
        module._active_collector = collector
    monkeypatch.setitem(sys.modules, CAPTURING_MODULE, module)


def test_nothing_records_without_transformers_capturing(monkeypatch):
    monkeypatch.delitem(sys.modules, CAPTURING_MODULE, raising=False)
    assert ak.outputs_recorded("attentions") is False


def test_an_active_collector_of_attentions_records(monkeypatch):
    var = ContextVar("output_collector", default=None)
    _capturing(monkeypatch, var)
    assert ak.outputs_recorded("attentions") is False
    token = var.set({"hidden_states": []})
    assert ak.outputs_recorded("attentions") is False
    var.reset(token)
    token = var.set({"cross_attentions": []})
    assert ak.outputs_recorded("attentions") is True
    var.reset(token)


def test_an_unknown_layout_counts_as_recording(monkeypatch):
    _capturing(monkeypatch, None)
    assert ak.outputs_recorded("attentions") is True
