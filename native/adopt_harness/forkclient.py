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


def main(argv):
    path, args = argv[0], argv[1:]
    if not args or args[0] not in ("-m", "-c") and args[0].startswith("-") or args[0] in ("-m", "-c") and len(args) < 2:
        fallback(args)
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
    except OSError:
        conn.close()
        fallback(args)
    body = json.dumps({"argv": args, "env": dict(os.environ), "cwd": os.getcwd()}).encode("utf-8")
    message = struct.pack("!I", len(body)) + body
    sent = socket.send_fds(conn, [message[:4096]], [0, 1, 2])
    conn.sendall(message[sent:])
    reply = b""
    while not reply.endswith(b"\n"):
        chunk = conn.recv(4096)
        if not chunk:
            sys.stderr.write(f"adopt: the Python fork server at {path} closed without a result\n")
            return 70
        reply += chunk
    result = json.loads(reply)
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
