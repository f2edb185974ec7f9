"""Run a probe script in a fresh interpreter with one environment variable set or unset: for the
process-wide settings (malloc, idle threads), which cannot be undone inside the test process."""

import json
import os
import subprocess
import sys

NATIVE = os.path.join(os.path.dirname(__file__), "..")


def probe(script, arg, variable, value=None, unset=(), also=None):
    """Run ``script`` with ``sys.argv[1] == arg`` and ``variable`` set to ``value`` (None: unset,
    as are the names in ``unset``; ``also`` sets more); returns (its last stdout line as JSON, its
    stderr)."""
    env = {k: v for k, v in os.environ.items() if k != variable and k not in unset}
    env.update(also or {})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [NATIVE, env.get("PYTHONPATH")]))
    if value is not None:
        env[variable] = value
    p = subprocess.run([sys.executable, "-c", script, arg], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.strip(), p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1]), p.stderr
