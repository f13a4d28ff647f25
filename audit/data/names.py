"""How file names leave the data stage: as valid, printable, one-line text.

A file name on Linux is bytes, not necessarily UTF-8. Python decodes the bytes that are not
UTF-8 as lone surrogates (``surrogateescape``): ``b"\\xff\\xfe.png"`` becomes ``"\\udcff\\udcfe.png"``,
which opens the file again but cannot be written to a UTF-8 CSV, JSON or PDF. Every path string
the data stage hands on (``Batch.paths``, ``Dataset.skipped``, the mask report, class folder
names) is therefore escaped, losslessly (our rule):

- each byte that is not part of valid UTF-8 is written ``\\xNN`` (two lower-case hex digits, 80-ff);
- each control character (U+0000-U+001F, U+007F) is written ``\\xNN`` (00-1f, 7f);
- a backslash is written ``\\\\``;
- every other character is kept.

Names without any of these (nearly all) are unchanged. The rule is reversible: ``\\\\`` is a
backslash, ``\\xNN`` below 80 is that ASCII control character, ``\\xNN`` from 80 is the raw byte.
The files themselves are always opened by their original path; the escaped string is an id.
"""

from __future__ import annotations

import os
import re
from pathlib import PurePath

_NEEDS_ESCAPE = re.compile(r"[\\\x00-\x1f\x7f\ud800-\udfff]")
_MESSAGE_ESCAPE = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


def _escape(char: str) -> str:
    code = ord(char)
    if char == "\\":
        return "\\\\"
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x80:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"  # another lone surrogate: not from a file name, kept visible


def escape_path(path: str | PurePath) -> str:
    """A path as text that can be written anywhere, lossless (see the module docstring):
    the name whose bytes are ``cat/ÿ`` in Latin-1 (``b"cat/\\xff"``) becomes ``cat/\\xff``."""
    return _NEEDS_ESCAPE.sub(lambda m: _escape(m.group()), os.fspath(path))


def escape_message(text: str) -> str:
    """A message (a skip reason) made writable: non-UTF-8 bytes and control characters are
    escaped as in ``escape_path``; backslashes are kept, since a message is read, not parsed."""
    return _MESSAGE_ESCAPE.sub(lambda m: _escape(m.group()), text)
