"""What counts as a text encoding: the check behind --encoding, shared by the options and the reader."""

from __future__ import annotations

import codecs


def text_codec(encoding: str) -> str:
    """Python's own name for a text encoding ("UTF8" and "utf_8" are "utf-8"); ValueError, with the
    line a user sees, for a name it does not know or a codec that is not a text one (rot13, base64
    and hex turn data into data, not bytes into text)."""
    examples = "give a text encoding such as utf-8, cp1252, latin-1 or utf-16"
    try:
        info = codecs.lookup(encoding)
    except LookupError:
        raise ValueError(f"unknown encoding {encoding!r}: {examples}") from None
    if not getattr(info, "_is_text_encoding", True):
        raise ValueError(f"{encoding!r} is not a text encoding: {examples}")
    return info.name
