"""The one dropout-off: two runs of a model (the original and its rewrite) compare only when
nothing random differs between them."""
from torch import nn

# Config attributes of randomness that differs between two runs: dropout, stochastic depth,
# SpecAugment masking.
DROPOUT_WORDS = ("dropout", "drop_prob", "drop_rate", "pdrop", "attn_drop", "drop_path", "layerdrop", "mask_time_prob", "mask_feature_prob")
# Float attributes modules keep their dropout probability in, for `F.dropout(x, self.<attr>)`.
_MODULE_ATTRS = ("dropout", "attention_dropout", "activation_dropout", "attn_dropout", "p")


def no_dropout(model):
    """Every nn.Dropout, and every dropout probability a module keeps as a float, set to 0."""
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
            continue
        for attr in _MODULE_ATTRS:
            if isinstance(getattr(m, attr, None), float):
                setattr(m, attr, 0.0)
    return model


def config_without_dropout(config):
    """A config's dropout-like float attributes set to 0 (before the model is built from it)."""
    for key in list(vars(config)):
        if any(w in key for w in DROPOUT_WORDS) and isinstance(getattr(config, key), float):
            try:
                setattr(config, key, 0.0)
            except (AttributeError, NotImplementedError, ValueError):
                pass  # a read-only alias: the attribute it aliases is set under its own name
    return config
