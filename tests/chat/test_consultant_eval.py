"""The consultant, asked as visitors ask: natural questions find what the knowledge says.

The questions live in ``consultant_eval.toml``; each is put to the real BuiltinProvider as a
conversation, with the provider's own earlier answers in it, as the consultant would.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatwatch.chat.knowledge import load_passages
from chatwatch.chat.providers.base import AIRequest, ChatTurn, Completion
from chatwatch.chat.providers.builtin import BuiltinProvider

EVAL_FILE = Path(__file__).with_name("consultant_eval.toml")
SYSTEM = ChatTurn("system", "You are the AI consultant of a small consultancy.")
MIN_ANSWERED = 0.9
MIN_HANDED_OFF = 0.9


@dataclass(frozen=True, slots=True)
class Case:
    """One question of the evaluation, with the conversation before it."""

    ask: str
    before: tuple[str, ...] = ()
    facts: tuple[str, ...] = ()


def load_cases(path: Path = EVAL_FILE) -> tuple[list[Case], list[Case]]:
    """The answerable and the unknown questions of an evaluation file."""
    data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))

    def case(item: dict[str, Any]) -> Case:
        return Case(item["ask"], tuple(item.get("before", ())), tuple(item.get("facts", ())))

    return [case(i) for i in data["answerable"]], [case(i) for i in data["unknown"]]


async def converse(provider: BuiltinProvider, case: Case) -> Completion:
    """Ask ``case`` after its earlier messages, each answered by the provider in turn."""
    turns = [SYSTEM]
    completion: Completion | None = None
    for text in (*case.before, case.ask):
        turns.append(ChatTurn("user", text))
        request = AIRequest(turns=list(turns), correlation_id="eval")
        last = [item async for item in provider.stream(request)][-1]
        assert isinstance(last, Completion)
        completion = last
        turns.append(ChatTurn("assistant", completion.content))
    assert completion is not None
    return completion


def _label(case: Case) -> str:
    return " / ".join((*case.before, case.ask))


def _excerpt(text: str) -> str:
    first = text.replace("\n", " ")
    return first if len(first) <= 160 else first[:157] + "..."


def test_eval_facts_are_in_the_knowledge() -> None:
    """Every required fact is written in the knowledge files, so no case asks the impossible."""
    answerable, unknown = load_cases()
    knowledge = "\n".join(p.text for p in load_passages())
    assert len(answerable) >= 60
    assert len(unknown) >= 10
    for case in answerable:
        assert case.facts, case.ask
        for fact in case.facts:
            assert fact in knowledge, (case.ask, fact)


async def test_answerable_questions_get_their_facts() -> None:
    """At least 90% of the questions the knowledge answers get every required fact."""
    provider = BuiltinProvider()
    answerable, _ = load_cases()
    failures = []
    for case in answerable:
        done = await converse(provider, case)
        missing = [f for f in case.facts if f not in done.content]
        # The hand-off reply carries contact details, which must not pass for an answer.
        if missing or "don't know" in done.content:
            failures.append(f"{_label(case)!r}: missing {missing}: {_excerpt(done.content)}")
    answered = 1 - len(failures) / len(answerable)
    assert answered >= MIN_ANSWERED, (
        f"answered {answered:.0%} of {len(answerable)}; failures:\n" + "\n".join(failures)
    )


async def test_unknown_questions_are_handed_off() -> None:
    """At least 90% of questions the knowledge does not cover get "I don't know" and a hand-off."""
    provider = BuiltinProvider()
    _, unknown = load_cases()
    failures = []
    for case in unknown:
        done = await converse(provider, case)
        if not done.handoff or "don't know" not in done.content:
            failures.append(f"{_label(case)!r}: {_excerpt(done.content)}")
    handed_off = 1 - len(failures) / len(unknown)
    assert handed_off >= MIN_HANDED_OFF, (
        f"handed off {handed_off:.0%} of {len(unknown)}; failures:\n" + "\n".join(failures)
    )
