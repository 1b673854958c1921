"""The consultancy's knowledge base: Markdown files shipped with the package, split into passages.

Each ``*.md`` file is one topic (its file name); every ``## `` heading starts a passage.
Text under the ``# `` title before the first ``## `` becomes a passage of its own.
A ``Keywords:`` line in a passage lists words visitors use for it: they help find the
passage but are never shown as part of it.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources

__all__ = ["Passage", "load_passages", "parse_passages"]

_HEADING = re.compile(r"^(#{1,2})\s+(.+?)\s*#*\s*$")
_KEYWORDS = re.compile(r"^keywords:\s*(.*?)\s*$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Passage:
    """One answerable piece of knowledge: a ``## `` section of a topic file."""

    id: str  # "<topic>/<slug of the title>", stable across releases for tests and logs
    topic: str
    title: str
    text: str
    keywords: str = ""  # words to find the passage by; not part of the answer

    @property
    def search_text(self) -> str:
        """What retrieval indexes: the title twice, as a heading names its passage best."""
        return f"{self.title}\n{self.title}\n{self.keywords}\n{self.text}"


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.casefold()).strip("-") or "section"


def parse_passages(topic: str, markdown: str) -> list[Passage]:
    """Split one Markdown document into passages at its ``#``/``##`` headings."""
    passages: list[Passage] = []
    title = topic
    body: list[str] = []
    keywords: list[str] = []

    def flush() -> None:
        # Blank-line runs shrink to one so paragraphs survive but layout noise does not.
        text = re.sub(r"\n\s*\n", "\n\n", "\n".join(line.rstrip() for line in body)).strip()
        if text:
            passages.append(
                Passage(f"{topic}/{_slug(title)}", topic, title, text, ", ".join(keywords))
            )

    for line in markdown.splitlines():
        match = _HEADING.match(line)
        if match:
            flush()
            title, body, keywords = match.group(2), [], []
        elif keywords_line := _KEYWORDS.match(line):
            keywords.append(keywords_line.group(1))
        else:
            body.append(line)
    flush()
    return passages


@functools.cache
def load_passages() -> tuple[Passage, ...]:
    """All passages of the shipped knowledge base, in file-name then document order."""
    root = resources.files(__name__)
    files = sorted(
        (entry for entry in root.iterdir() if entry.name.endswith(".md")),
        key=lambda entry: entry.name,
    )
    passages: list[Passage] = []
    for entry in files:
        passages.extend(parse_passages(entry.name[:-3], entry.read_text(encoding="utf-8")))
    return tuple(passages)
