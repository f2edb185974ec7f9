"""The speed harness's two training steps: with every dropout off (nothing random differs between
the sides) or as the model's configuration sets it (the step as it is run), both sides alike."""
import os
import types

import torch
from torch import nn

import transformers.models.bert.modeling_bert as bert  # installed by setup-python.sh --hf

from adopt_harness import speed

SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64, "vocab_size": 100}


def variants(monkeypatch, dropout):
    # the "rewritten" tree is transformers' own: what matters here is how both sides are built
    monkeypatch.setitem(speed.MODELS, "bert-small", ("bert", "BertModel", SMALL))
    args = types.SimpleNamespace(rewritten_dir=os.path.dirname(os.path.dirname(bert.__file__)), variant=[], without=[], dropout=dropout)
    return speed.build_variants("bert-small", args, "cpu", torch.float32)[2]


def dropout_ps(model):
    return {m.p for m in model.modules() if isinstance(m, nn.Dropout)}


def two_training_forwards_differ(model):
    model.train(True)
    ids = torch.randint(0, 100, (2, 9), generator=torch.Generator().manual_seed(0))
    return not torch.equal(model(input_ids=ids)[0], model(input_ids=ids)[0])


def test_dropout_off_zeroes_every_dropout(monkeypatch):
    for model in variants(monkeypatch, "off").values():
        assert dropout_ps(model) == {0.0}
        assert not two_training_forwards_differ(model)


def test_dropout_config_keeps_what_the_configuration_sets(monkeypatch):
    built = variants(monkeypatch, "config")
    assert set(built) == {"original", "rewritten"}
    for model in built.values():
        assert dropout_ps(model) == {0.1}  # BertConfig's hidden and attention dropout
        assert two_training_forwards_differ(model)
