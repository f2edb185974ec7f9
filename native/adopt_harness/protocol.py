"""How a harness talks to its caller: JSON lines on stdout, each an envelope the schema
(schema.py) describes, progress as it happens and results as they are done. Anything else the
model code prints goes to stderr, so stdout carries only these lines."""
import json
import math
import sys

from adopt_harness.schema import HARNESSES


class Channel:
    def __init__(self, harness):
        if harness not in HARNESSES:
            raise ValueError(f"unknown harness {harness!r}")
        self.harness = harness
        self.out = sys.stdout
        # model code's prints (and transformers' warnings printed with print) must not interleave
        sys.stdout = sys.stderr

    def _write(self, kind, payload):
        line = json.dumps(finite({"adopt": 1, "harness": self.harness, "kind": kind, kind: payload}), allow_nan=False)
        self.out.write(line + "\n")
        self.out.flush()

    def progress(self, **fields):
        self._write("progress", fields)

    def result(self, result):
        self._write("result", result)


def finite(value):
    """JSON has no NaN or infinity: a non-finite number becomes null, which the schema then names
    as the field that is wrong rather than a line the reader cannot parse."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def results(lines):
    """The results of envelope lines (for Python callers and tests): non-envelope lines are skipped."""
    out = []
    for line in lines:
        try:
            envelope = json.loads(line)
        except ValueError:
            continue
        if isinstance(envelope, dict) and envelope.get("adopt") == 1 and envelope.get("kind") == "result":
            out.append(envelope["result"])
    return out
