"""Okapi BM25 ranking with light English normalisation, for the built-in consultant.

Written by hand on purpose: rank-bm25 would pull numpy in to score a few dozen
passages, which plain Python does in well under a millisecond.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence

__all__ = ["STOPWORDS", "BM25Index", "stem", "tokenize", "words"]

_WORD = re.compile(r"\w+(?:'\w+)*")

# One string so the list stays readable; split into a set below.
_STOPWORD_TEXT = """
a about above after again all am an and any are as at be been before being below between
both but by can could did do does doing down during each few for from further get got had
has have having he her here hers him his how i if in into is it its itself just let like me
more most much my no nor not now of off on once only or other our ours out over own please
same she should so some such tell than thank thanks that the their them then there these
they this those through to too under until up us very want was we were what when where
which while who whom why will with would you your yours hi hello hey ok okay yes yeah yep
sure know need don doesn didn isn aren wasn won couldn wouldn shouldn
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())

# Phrases whose meaning is lost once their words are dropped as stopwords.
_PHRASES = {
    "how much": "price",
    "how long": "timeline",
    "how many people": "team",
    "what do you do": "service",
    "who are you": "assistant",
}

# Words a visitor uses for what the knowledge base calls something else.
_SYNONYMS = {
    "cost": "price",
    "fee": "price",
    "rate": "price",
    "charge": "price",
    "expensive": "price",
    "cheap": "price",
    "budget": "price",
    "quote": "price",
    "appointment": "consultation",
    "meeting": "consultation",
    "call": "consultation",
    "schedule": "book",
    "email": "contact",
    "phone": "contact",
    "address": "contact",
    "reach": "contact",
    "gdpr": "privacy",
    "safe": "privacy",
    "confidential": "confidentiality",
    "secure": "security",
    "bot": "assistant",
    "chatbot": "assistant",
    "robot": "assistant",
    "duration": "timeline",
}


def stem(word: str) -> str:
    """Strip common English inflections so "prices", "pricing" and "priced" meet."""
    if len(word) <= 3 or not word.isascii():
        return word
    for suffix, replacement in (("ies", "y"), ("sses", "ss"), ("ations", ""), ("ation", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)] + replacement
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    for suffix in ("ing", "ed", "ate", "e"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            if word[-1] == word[-2] and word[-1] != "s":
                word = word[:-1]  # "planning" -> "plann" -> "plan"
            break
    return word


_STEMMED_SYNONYMS = {stem(k): stem(v) for k, v in _SYNONYMS.items()}
_PHRASE = re.compile(r"\b(?:" + "|".join(map(re.escape, _PHRASES)) + r")\b")


def words(text: str) -> list[str]:
    """Case-folded, NFKC-normalised words of ``text``, stopwords kept."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold().replace("’", "'"))


def tokenize(text: str) -> list[str]:
    """Index terms of ``text``: words without stopwords, stemmed, synonyms merged."""
    joined = _PHRASE.sub(lambda m: _PHRASES[m.group()], " ".join(words(text)))
    terms = []
    for word in joined.split():
        word = word.split("'")[0]  # "we're" -> "we", "company's" -> "company"
        if word and word not in STOPWORDS:
            stemmed = stem(word)
            terms.append(_STEMMED_SYNONYMS.get(stemmed, stemmed))
    return terms


class BM25Index:
    """Scores documents (lists of terms) against a weighted query with Okapi BM25."""

    def __init__(self, documents: Sequence[Sequence[str]], *, k1: float = 1.5, b: float = 0.75):
        self._tf = [Counter(doc) for doc in documents]
        self._len = [len(doc) for doc in documents]
        self._avg = (sum(self._len) / len(documents)) if documents else 0.0
        self._df: Counter[str] = Counter(t for tf in self._tf for t in tf)
        self._k1, self._b = k1, b

    def __len__(self) -> int:
        return len(self._tf)

    def idf(self, term: str) -> float:
        """Lucene's always-positive IDF; unseen terms get the highest value."""
        df, n = self._df.get(term, 0), len(self._tf)
        return math.log(1.0 + (n - df + 0.5) / (df + 0.5))

    def score(self, doc: int, query: Mapping[str, float]) -> float:
        """BM25 score of document ``doc``; each query term counts ``weight`` times."""
        tf, length = self._tf[doc], self._len[doc]
        norm = self._k1 * (1.0 - self._b + self._b * length / (self._avg or 1.0))
        total = 0.0
        for term, weight in query.items():
            f = tf.get(term, 0)
            if f:
                total += weight * self.idf(term) * f * (self._k1 + 1.0) / (f + norm)
        return total

    def coverage(self, doc: int, terms: Sequence[str]) -> float:
        """Share (IDF-weighted, 0..1) of ``terms`` that document ``doc`` contains."""
        unique = set(terms)
        whole = sum(self.idf(t) for t in unique)
        found = sum(self.idf(t) for t in unique if t in self._tf[doc])
        return found / whole if whole else 0.0

    def search(self, query: Mapping[str, float], limit: int = 3) -> list[tuple[int, float]]:
        """The best ``limit`` (document, score) pairs with a positive score, best first.

        Ties keep document order, so the same query always gives the same answer.
        """
        scored = [(i, self.score(i, query)) for i in range(len(self._tf))]
        ranked = sorted((pair for pair in scored if pair[1] > 0), key=lambda p: -p[1])
        return ranked[:limit]
