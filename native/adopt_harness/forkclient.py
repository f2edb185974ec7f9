"""Runs `python ARGS...` as a fork of a warm server (forkserver.py), or as itself when none answers.

Usage: python -S forkclient.py SOCKET ARGS...   (ARGS as they would follow the interpreter)
Kept to the standard library's cheapest modules: it starts once per run.
"""
import json
import os
import socket
import struct
import sys


def fallback(args):
    """No server: become the interpreter itself, so the run happens all the same."""
    os.execv(sys.executable, [sys.executable] + args)


def split_options(args):
    """The -W options and the run (`-m module ...`, `-c code ...` or `script ...`), or None for a
    command line the server does not take (other interpreter options): those run as themselves."""
    warnings = []
    i = 0
    while i < len(args) and args[i].startswith("-W"):
        if args[i] == "-W" and i + 1 < len(args):
            warnings.append(args[i + 1])
            i += 2
        else:
            warnings.append(args[i][2:])
            i += 1
    run = args[i:]
    if not run or run[0] in ("-m", "-c") and len(run) < 2 or run[0] not in ("-m", "-c") and run[0].startswith("-"):
        return warnings, None
    return warnings, run


def main(argv):
    path, args = argv[0], argv[1:]
    warnings, run = split_options(args)
    if run is None:
        fallback(args)
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
    except OSError:
        conn.close()
        fallback(args)
    body = json.dumps({"argv": run, "warnings": warnings, "env": dict(os.environ), "cwd": os.getcwd()}).encode("utf-8")
    message = struct.pack("!I", len(body)) + body
    sent = socket.send_fds(conn, [message[:4096]], [0, 1, 2])
    if sent < len(message):
        conn.sendall(message[sent:])
    reply = b""
    while not reply.endswith(b"\n"):
        chunk = conn.recv(4096)
        if not chunk:
            sys.stderr.write(f"adopt: the Python fork server at {path} closed without a result\n")
            return 70
        reply += chunk
    result = json.loads(reply)
    if "fresh" in result:
        # the run sets something the server read when it started: it needs an interpreter of its own
        conn.close()
        fallback(args)
    if "error" in result:
        sys.stderr.write(f"adopt: the Python fork server at {path} refused the run: {result['error']}\n")
        return 70
    if "signal" in result:
        # end as the child ended, so the launcher sees the same signal
        os.kill(os.getpid(), result["signal"])
        return 128 + result["signal"]
    return result["exit"]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
