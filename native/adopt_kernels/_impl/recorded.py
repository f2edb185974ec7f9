"""Whether a caller outside the rewritten function reads the attention weights it returns.

Current transformers (``@capture_outputs`` in ``transformers.utils.output_capturing``) takes
``output_attentions`` out of the keywords at the model's entry and records the weights with
forward hooks on the attention modules while a collector is active. A rewritten
``eager_attention_forward`` cannot see the flag, so it asks the collector instead.
"""

import sys

CAPTURING_MODULE = "transformers.utils.output_capturing"


def outputs_recorded(kind):
    """True when transformers' output collector is recording outputs whose key ends with ``kind``
    (``"attentions"`` also covers ``cross_attentions``).

    Never imports transformers: when its capturing module is not loaded, nothing records. When it
    is loaded but keeps its collector elsewhere than this version knows, the answer is True, so
    the caller runs the original code, which returns the weights.
    """
    module = sys.modules.get(CAPTURING_MODULE)
    if module is None:
        return False
    collector = getattr(module, "_active_collector", None)
    get = getattr(collector, "get", None)
    if get is None:
        return True
    active = get()
    if active is None:
        return False
    try:
        return any(str(key).endswith(kind) for key in active)
    except TypeError:
        return True
