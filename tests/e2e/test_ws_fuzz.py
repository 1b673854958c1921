"""Hypothesis drives random frames at a real ``/ws/chat``: every one is answered, none closes.

Frames tried: valid frames cut at any point, deep nesting, huge and odd numbers, JSON-escaped
lone surrogates (``"\\ud800"``), unknown types and fields, random text and binary frames. The
server must answer each with a well-formed frame (an ``error`` frame for the bad ones), never
close the socket for a text frame below the size limit, and still answer a normal question
afterwards. (Raw invalid UTF-8 in a text frame is rightly closed with 1007 and is tested in
``test_chat_e2e.py``; a text frame cannot carry it here.)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import ClientConnection, connect

from tests.threaded import ThreadServer

SERVER_TYPES = {"connected", "ack", "ai_delta", "ai_message", "error", "pong"}
ERROR_CODES = {"invalid_json", "invalid_frame", "message_too_large", "rate_limited"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadServer]:
    """One server for every example (starting one per example would dominate the run)."""
    threaded = ThreadServer(
        tmp_path_factory.mktemp("fuzz"),
        limits={"messages_per_minute": 1_000_000},
        cache={"enabled": False},
    )
    with threaded:
        yield threaded


json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
frame_dict = st.fixed_dictionaries(
    {},
    optional={
        "type": st.one_of(
            st.sampled_from(["message", "quick_action", "ping", "MESSAGE", ""]), json_value
        ),
        "id": st.one_of(st.text(max_size=80), json_value),
        "content": st.one_of(st.text(max_size=200), json_value),
        "action": st.one_of(st.sampled_from(["pricing", "nope", ""]), json_value),
        "correlation_id": st.one_of(st.text(max_size=80), json_value),
    },
)


def _cut(frame: str, at: int) -> str:
    return frame[: at % (len(frame) + 1)]


text_frames = st.one_of(
    frame_dict.map(json.dumps),
    st.tuples(frame_dict.map(json.dumps), st.integers(min_value=0)).map(lambda t: _cut(*t)),
    st.integers(min_value=1, max_value=5000).map(lambda n: "[" * n + "]" * n),
    st.integers(min_value=1, max_value=5000).map(lambda n: '{"a":' * n + "1" + "}" * n),
    st.sampled_from(
        [
            '{"type":"message","id":"s","content":"\\ud800"}',
            '{"type":"message","id":"\\udfff","content":"hi"}',
            '{"type":"message","id":"n","content":"x","correlation_id":"\\ud800"}',
            '{"type":"message","id":"big","content":1e999}',
            '{"type":"message","id":"big","content":' + "9" * 4000 + "}",
            '{"type":"message","id":"dup","id":"dup2","content":"hi"}',
            "",
            " ",
            "null",
            "\x00",
        ]
    ),
    st.text(max_size=300),
)
frames = st.one_of(text_frames, st.binary(max_size=300))


def _read_until_pong(ws: ClientConnection) -> list[dict[str, Any]]:
    out = []
    while True:
        raw = ws.recv(timeout=10)
        frame = json.loads(raw)
        assert isinstance(frame, dict) and frame.get("type") in SERVER_TYPES, frame
        if frame["type"] == "error":
            assert isinstance(frame.get("message"), str) and frame["message"]
            assert frame.get("code") in ERROR_CODES | {"ai_unavailable", "internal"}, frame
            assert isinstance(frame.get("correlation_id"), str)
        out.append(frame)
        if frame["type"] == "pong":
            return out


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=st.lists(frames, min_size=1, max_size=8))
def test_random_frames_are_answered_and_never_close_the_socket(
    server: ThreadServer, batch: list[str | bytes]
) -> None:
    """Each random frame is followed by a ping: the frames up to its pong are well-formed,
    the socket stays open throughout, and a normal question is still answered."""
    token = server.guest_token()
    assert server.srv is not None
    with connect(f"{server.srv.ws_url}?token={token}", max_size=None) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "connected"
        for frame in batch:
            ws.send(frame)
            ws.send('{"type":"ping"}')
            _read_until_pong(ws)
        ws.send(
            '{"type":"message","id":"after-fuzz","content":"What does a security review cost?"}'
        )
        while True:
            frame = json.loads(ws.recv(timeout=10))
            if frame.get("reply_to") == "after-fuzz" and frame["type"] in ("ai_message", "error"):
                break
        assert frame["type"] == "ai_message", frame
        assert frame["content"]
