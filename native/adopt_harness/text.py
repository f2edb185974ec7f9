"""Shortening what the harness reports (an exception's message inside a reason): a reader must be
able to read what is left, so a cut ends at a word and says that it cut."""

ELLIPSIS = "…"


def clip(text, limit):
    """`text` in at most `limit` characters, cut at the last space before the limit (mid-word only
    where a single word is that long), with an ellipsis where anything was cut."""
    text = str(text)
    if len(text) <= limit:
        return text
    room = max(limit - len(ELLIPSIS), 1)
    cut = text[:room]
    space = cut.rfind(" ")
    if space > room // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:(") + ELLIPSIS


def first_line(e, limit=200):
    """An exception as `Type: first line of its message`, clipped: the first line is where torch
    and Python say what went wrong; the lines after it are context (a traceback of the C++ side)."""
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {clip(lines[0], limit)}" if lines else type(e).__name__
