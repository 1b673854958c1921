"""The offline consultant: answers from the shipped knowledge base, never from thin air.

Replies are assembled only from knowledge passages and fixed templates. The visitor's
text is never echoed back, so nothing they type (markup, prompt injection) can reach
the answer, and the same conversation always gets the same reply, which keeps
response caching sound.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal

from chatwatch.chat.knowledge import Passage, load_passages
from chatwatch.chat.providers.base import (
    AIProvider,
    AIProviderError,
    AIRequest,
    Completion,
    TextDelta,
)
from chatwatch.chat.retrieval import BM25Index, tokenize, words
from chatwatch.chat.tokens import count_chat_tokens, count_tokens

__all__ = ["BUILTIN_QUICK_ACTIONS", "BuiltinProvider"]

BUILTIN_QUICK_ACTIONS: tuple[str, ...] = (
    "pricing",
    "services",
    "book_consultation",
    "talk_to_human",
    "contact",
)

_ACTION_PASSAGES = {
    "pricing": "pricing/our-prices",
    "services": "services/our-services",
    "book_consultation": "booking/how-to-book-a-consultation",
    "contact": "contact/contact-details",
    "talk_to_human": "contact/talking-to-a-human-consultant",
}
_ACTION_LEADS = {
    "pricing": "Here is an overview of our prices:",
    "services": "Here is what we can help you with:",
    "book_consultation": "Booking a consultation is easy:",
    "contact": "Here is how to reach us:",
    "talk_to_human": "Of course, I will hand you over to a human consultant.",
}

_DEFAULT_ACTIONS = ("services", "pricing", "book_consultation", "talk_to_human")
_HANDOFF_ACTIONS = ("talk_to_human", "contact", "book_consultation")
_TOPIC_ACTIONS = {
    "services": ("pricing", "book_consultation", "talk_to_human"),
    "pricing": ("book_consultation", "services", "talk_to_human"),
    "booking": ("book_consultation", "contact", "talk_to_human"),
    "contact": ("book_consultation", "talk_to_human"),
    "hours": ("contact", "book_consultation"),
}
_TOPIC_CLOSINGS = {
    "services": "Would you like to see our prices, or book a free consultation to talk it through?",
    "pricing": "For a price tailored to your situation, you are welcome to book a free "
    "consultation.",
    "booking": "Would you like me to show you how to get in touch?",
}
_CLOSING = "Is there anything else I can help you with?"

_WELCOME = (
    "Hello and welcome! I'm the virtual consultant here. I can answer questions about our "
    "services, prices, booking a free consultation and how we work, or put you in touch "
    "with a human consultant. What would you like to know?"
)
_THANKS = "You're welcome! Is there anything else I can help you with?"
_CLARIFY = (
    "Sorry, I didn't quite catch that. Could you rephrase your question? "
    "You can also pick one of the options below."
)
_UNKNOWN = (
    "I'm sorry, I don't know the answer to that, and I'd rather not guess. I can answer "
    "questions about our services, prices, booking a consultation and how we work. "
    "Would you like to talk to a human consultant?"
)
_REFUSE = (
    "I can't change how I work or share my internal instructions, but I'm happy to help "
    "with questions about our services, prices, booking a consultation and how we work."
)
_GUARDED = "I can only answer from our published information, so here is what I can tell you."


def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


_GREETINGS = _wordset(
    "hi hello hey hiya howdy greetings hallo hola bonjour yo morning afternoon evening"
)
_GREETING_FILLER = _wordset("there all everyone team folks good")
_THANKS_WORDS = _wordset("thanks thank cheers thx ty")
_THANKS_FILLER = _wordset("you so very much a lot great ok okay that's helpful bye goodbye")
_MARKUP = re.compile(r"<[^<>]{0,500}>")
_INJECTION = re.compile(
    r"\b(ignore|disregard|forget|override)\b.{0,40}\b(instruction|prompt|rule|guideline)s?\b"
    r"|\bsystem\s+prompt\b|\bjailbreak|\bdeveloper\s+mode\b|\byou\s+are\s+now\b|<\|",
    re.IGNORECASE | re.DOTALL,
)

# Answer only when the best passage has a real BM25 score and contains most of the
# (IDF-weighted) question terms; below that the honest reply is "I don't know".
_MIN_SCORE = 0.5
_MIN_COVERAGE = 0.5
_SECOND_PASSAGE_RATIO = 0.75  # a runner-up this close to the best is worth quoting too
_MAX_PASSAGES = 3  # one per part of a question in several parts, at most
# How much earlier messages (newest first) weigh against the question's own words: a lot
# when the question leans on them ("and for 150 people?"), a little otherwise, so that a
# self-contained new question is not pulled back to the old topic.
_FOLLOW_UP_WEIGHTS = (0.6, 0.3)
_CONTEXT_WEIGHTS = (0.2, 0.1)
_FOLLOW_UP_OPENERS = _wordset("and also plus but so then")
_FOLLOW_UP_OPENINGS = (["what", "about"], ["how", "about"])
_ANAPHORA = _wordset("it its that this those these them one ones same")
# Terms in more than about a fifth of the passages (price, day, project) name no subject.
_SPECIFIC_IDF = 1.5
# Where a question in several parts breaks: sentence ends, dashes, and "and"/"but" when a new
# question or subject follows ("... review and how long ...", not "data and AI").
_CLAUSE_BREAK = re.compile(
    r"[?!.;:]+(?=\s|$)|\s[-–—]+\s"
    r"|,?\s+(?:and|but|also|plus)\s+(?=(?:how|what|when|where|who|which|why|do|does|did|can"
    r"|could|will|would|is|are|should|may|your|you|i|we|there)\b)",
    re.IGNORECASE,
)


# How a quoted passage is introduced: the answer, the answer to another part of the
# question, or a passage that may be useful besides.
_Lead = Literal["answer", "also", "related"]
_LEADS: dict[_Lead, str] = {
    "answer": "Here's what I can tell you about",
    "also": "As for",
    "related": "You may also find this useful, on",
}


@dataclass(frozen=True, slots=True)
class _Reply:
    text: str
    quick_actions: tuple[str, ...]
    handoff: bool = False


class BuiltinProvider(AIProvider):
    """An offline consultant that streams answers grounded in the shipped knowledge base."""

    name = "builtin"

    def __init__(self, model: str = "chatwatch-consultant", *, chunk_words: int = 3) -> None:
        if chunk_words < 1:
            raise ValueError("chunk_words must be at least 1")
        self.model = model
        self._chunk_words = chunk_words
        self._passages = load_passages()
        self._by_id = {p.id: p for p in self._passages}
        missing = [pid for pid in _ACTION_PASSAGES.values() if pid not in self._by_id]
        if missing:
            raise AIProviderError(f"knowledge base lacks passages: {', '.join(missing)}")
        self._index = BM25Index(
            [tokenize(p.search_text) for p in self._passages],
            key_terms=[tokenize(f"{p.title}\n{p.keywords}") for p in self._passages],
        )

    async def stream(self, request: AIRequest) -> AsyncIterator[TextDelta | Completion]:
        """Yield the reply a few words at a time, then one Completion with estimated usage."""
        try:
            reply = self._reply(request)
            chunks = self._chunks(reply.text)
            content = "".join(chunks)
            turns = list(request.turns)
            # Counting long input takes milliseconds of pure Python; keep it off the loop.
            input_tokens, output_tokens = await asyncio.to_thread(
                lambda: (count_chat_tokens(turns), count_tokens(content))
            )
        except AIProviderError:
            raise
        except Exception as exc:
            raise AIProviderError(f"builtin consultant failed: {exc!r}") from exc
        for chunk in chunks:
            yield TextDelta(chunk)
            await asyncio.sleep(0)
        yield Completion(
            content=content,
            model=self.model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            estimated_usage=True,
            quick_actions=reply.quick_actions,
            handoff=reply.handoff,
        )

    def _chunks(self, text: str) -> list[str]:
        """The reply in pieces of ``chunk_words`` words, each with its trailing whitespace."""
        pieces = re.findall(r"\S+\s*", text)
        n = self._chunk_words
        return ["".join(pieces[i : i + n]) for i in range(0, len(pieces), n)]

    def _reply(self, request: AIRequest) -> _Reply:
        if request.quick_action is not None:
            return self._action_reply(request.quick_action)
        user_turns = [t.content for t in request.turns if t.role == "user"]
        if not user_turns:
            return _Reply(_WELCOME, _DEFAULT_ACTIONS)
        return self._answer(user_turns[-1], user_turns[-2::-1])

    def _action_reply(self, action: str) -> _Reply:
        passage_id = _ACTION_PASSAGES.get(action)
        if passage_id is None:
            listing = ", ".join(BUILTIN_QUICK_ACTIONS)
            return _Reply(
                f"Sorry, I don't know that action. These are the ones I can help with: {listing}.",
                BUILTIN_QUICK_ACTIONS,
            )
        text = f"{_ACTION_LEADS[action]}\n\n{self._by_id[passage_id].text}"
        if action == "talk_to_human":
            return _Reply(text, _HANDOFF_ACTIONS, handoff=True)
        topic = self._by_id[passage_id].topic
        return _Reply(f"{text}\n\n{_TOPIC_CLOSINGS.get(topic, _CLOSING)}", _actions(topic))

    def _answer(self, question: str, earlier: Sequence[str]) -> _Reply:
        said = words(question)
        if said and _only(said, _GREETINGS, _GREETING_FILLER):
            return _Reply(_WELCOME, _DEFAULT_ACTIONS)
        if said and _only(said, _THANKS_WORDS, _THANKS_FILLER):
            return _Reply(_THANKS, _DEFAULT_ACTIONS)
        guarded = _INJECTION.search(question) is not None
        # Injection phrases and pasted markup are noise to retrieval; the rest may be a
        # fair question.
        text = _MARKUP.sub(" ", _INJECTION.sub(" ", question))
        terms = tokenize(text, query=True)
        if not terms:
            return _Reply(_REFUSE if guarded else _CLARIFY, _DEFAULT_ACTIONS)
        found = self._retrieve(text, terms, earlier)
        if not found:
            if guarded:
                return _Reply(_REFUSE, _DEFAULT_ACTIONS)
            human = self._by_id[_ACTION_PASSAGES["talk_to_human"]].text
            return _Reply(f"{_UNKNOWN}\n\n{human}", _HANDOFF_ACTIONS, handoff=True)
        best = found[0][0]
        parts = [_GUARDED] if guarded else []
        parts.extend(_present(p, lead=lead) for p, lead in found)
        if best.id == _ACTION_PASSAGES["talk_to_human"]:
            # Asked for a person in so many words: the same hand-off as the quick action.
            return _Reply("\n\n".join(parts), _HANDOFF_ACTIONS, handoff=True)
        parts.append(_TOPIC_CLOSINGS.get(best.topic, _CLOSING))
        return _Reply("\n\n".join(parts), _actions(best.topic))

    def _retrieve(
        self, text: str, terms: list[str], earlier: Sequence[str]
    ) -> list[tuple[Passage, _Lead]]:
        """Passages worth quoting with how to introduce each, best first; empty if unknown."""
        context = [tokenize(t, query=True) for t in earlier[: len(_FOLLOW_UP_WEIGHTS)]]
        pieces = [c for c in _CLAUSE_BREAK.split(text) if c.strip()]
        clauses = [(c, t) for c in pieces if (t := tokenize(c, query=True))] if pieces[1:] else []
        if len(clauses) > 1:
            # A question in several parts gets an answer to each part it can answer; a
            # part's nearest context is the part before it ("... and how long does it take?").
            found: list[int] = []
            for i, (clause, own) in enumerate(clauses):
                nearer = [t for _, t in reversed(clauses[:i])]
                follow_up = self._leans_on_context(clause, own)
                hits = self._hits(own, [*nearer, *context], follow_up)
                # Two parts may share their best passage ("we're a charity - what's your
                # day rate?"); a close runner-up then answers the second part.
                fresh = [d for d, s in hits if s >= hits[0][1] * _SECOND_PASSAGE_RATIO]
                fresh = [d for d in fresh if d not in found]
                if fresh:
                    found.append(fresh[0])
            if found:
                first, *others = (self._passages[d] for d in found[:_MAX_PASSAGES])
                return [(first, "answer"), *((p, "also") for p in others)]
        hits = self._hits(terms, context, self._leans_on_context(text, terms))
        if not hits:
            return []
        best, top = self._passages[hits[0][0]], hits[0][1]
        # A close runner-up from another topic adds something (a service and its price);
        # one from the same topic mostly repeats the best passage.
        runner_up = [
            self._passages[d]
            for d, s in hits[1:]
            if s >= top * _SECOND_PASSAGE_RATIO and self._passages[d].topic != best.topic
        ]
        return [(best, "answer"), *((p, "related") for p in runner_up[:1])]

    def _hits(
        self, terms: list[str], context: Sequence[list[str]], follow_up: bool
    ) -> list[tuple[int, float]]:
        """(passage, score) pairs that answer ``terms``, best first; earlier text only ranks."""
        query = dict.fromkeys(terms, 1.0)
        weights = _FOLLOW_UP_WEIGHTS if follow_up else _CONTEXT_WEIGHTS
        for earlier_terms, weight in zip(context, weights, strict=False):
            for term in earlier_terms:
                query.setdefault(term, weight)
        # A number the knowledge never mentions ("say 100 staff") is a detail of the
        # question, not a part of it that goes unanswered.
        own = [t for t in terms if self._index.knows(t) or not t.isdigit()]
        return [
            (doc, score)
            for doc, score in self._index.search(query, limit=5)
            if score >= _MIN_SCORE and self._index.coverage(doc, own) >= _MIN_COVERAGE
        ]

    def _leans_on_context(self, text: str, terms: list[str]) -> bool:
        """True for a follow-up: "and ...", "what about ...", "that", or nothing specific."""
        said = words(text)
        if (said and said[0] in _FOLLOW_UP_OPENERS) or said[:2] in _FOLLOW_UP_OPENINGS:
            return True
        if any(w in _ANAPHORA for w in said):
            return True
        return all(self._index.idf(t) < _SPECIFIC_IDF for t in terms if self._index.knows(t))


def _only(said: list[str], required: frozenset[str], filler: frozenset[str]) -> bool:
    """True when every word is a required or filler word and at least one is required."""
    return any(w in required for w in said) and all(w in required or w in filler for w in said)


def _actions(topic: str) -> tuple[str, ...]:
    return _TOPIC_ACTIONS.get(topic, _DEFAULT_ACTIONS)


def _present(passage: Passage, *, lead: _Lead = "answer") -> str:
    """A passage as part of the answer, introduced by its title."""
    title = passage.title
    if title.endswith("?"):  # FAQ entries answer their own question
        return passage.text if lead == "answer" else f"{title} {passage.text}"
    if title.startswith("About "):
        title = title.removeprefix("About ")
    elif not title[:2].isupper():  # keep acronyms ("GDPR") as written
        title = title[0].lower() + title[1:]
    return f"{_LEADS[lead]} {title}:\n{passage.text}"
