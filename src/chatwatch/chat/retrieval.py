"""Text normalisation and BM25 ranking for the built-in consultant.

Ranking is bm25s's (Okapi BM25, Lucene variant) and stemming is Snowball's English stemmer
(PyStemmer). Written here by hand is only what no library knows: how this consultancy's
visitors word things (the phrase, synonym and filler tables), and the coverage measure the
consultant uses to tell an answer from a guess.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import unicodedata
from collections import Counter
from collections.abc import Collection, Mapping, Sequence

import bm25s
import Stemmer

__all__ = ["STOPWORDS", "BM25Index", "stem", "tokenize", "words"]

# bm25s sets its own logger to DEBUG at import, which would put a record per index build
# into the application's logs.
logging.getLogger("bm25s").setLevel(logging.WARNING)

_WORD = re.compile(r"\w+(?:'\w+)*")

# One string so the list stays readable; split into a set below.
_STOPWORD_TEXT = """
a about above after again all am an and any are as at be been before being below between
both but by can could did do does doing during each few for from further get got had
has have having he her here hers him his how i if in into is it its itself just let like me
more most much my no nor not now of off on once only or other our ours out over own please
same she should so some such tell than thank thanks that the their them then there these
they this those through to too under until up us very want was we were what when where
which while who whom why will with would you your yours hi hello hey ok okay yes yeah yep
sure know need don doesn didn isn aren wasn won couldn wouldn shouldn
"""
# Conversational words that name no topic of this knowledge base. Left in, the index would
# not know them, and an unknown word counts as a part of the question nothing answers.
_FILLER_TEXT = """
actually really exactly basically generally usually typically normally roughly approximately
probably possibly maybe perhaps currently right just still already also even quite pretty
guy guys folks someone somebody anyone anybody everyone everybody something anything
everything thing things stuff kind sort bit lot lots way ways idea ideas info information
detail details question questions wonder wondering curious interested looking keen
think thought guess mind say said ask asking asked explain please kindly able possible
another other different else big bigger biggest large larger huge little number numbers
many option options choice choices build create make develop implement come comes later
im ive id youre youve weve whats wheres whens hows theres thats dont doesnt cant wont
might may must shall rather best better good great nice policy policies plus extra
additional around came went re instead figure decide decided wonder
monday tuesday wednesday thursday friday today tomorrow tonight morning afternoon evening
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())
_FILLER = frozenset(_FILLER_TEXT.split())

# Phrases whose meaning is lost once their words are dropped as stopwords, or that mean
# something other than their words; matched on the case-folded words, stopwords kept.
_PHRASES = {
    r"how much|what's the damage": "price",
    r"how long have you been (?:in business|around|going|trading|operating)|how old is": (
        "founded"
    ),
    r"how long": "timeline",
    r"how (?:soon|quickly|fast)": "timeline",
    r"how (?:big|large)": "size",
    r"how many (?:people|staff|employees|consultants|of you)(?= (?:do|are|work|have|is))": (
        "team size"
    ),
    r"who (?:are you|am i (?:talking|speaking|chatting) (?:to|with))": "assistant",
    r"(?:real|actual|live) (?:person|human|people)|human being": "human",
    r"who (?:runs|owns|leads|manages|founded|started|is in charge of|is behind)": (
        "founder director"
    ),
    r"what (?:do|does|can) (?:you|your company|your firm|northwind)(?: \w+){0,2} (?:do|offer)": (
        "service"
    ),
    r"tax returns?|do (?:my|our) tax(?:es)?": "tax-return",  # their taxes, not VAT on prices
    r"your (?:company|firm|business|consultancy|organi[sz]ation)": "northwind",
    r"fixed price": "fixedprice",  # not "fix", as in "fix problems"
    r"(?:is|are|went|gone|goes|go) down|not working|stopped working|crashed|broken": "outage",
    r"right now|right away|straight away|asap|as soon as possible": "urgent",
    r"get in touch|reach you": "contact",
    r"in person|face to face|on ?site": "onsite",
    r"come (?:to|over|and see)|drop by|pop in": "visit",
    r"set up|sign up for": "book",
    r"(?:initial|first|intro|introductory) (?:chat|call|meeting|conversation|session|talk)": (
        "first appointment"
    ),
    r"(?:speak|talk|chat) (?:to|with) (?:a |an |your |one of your |a real )?"
    r"(?:consultant|person|human|someone|somebody|agent|expert|adviser|advisor|people)": (
        "talk human"
    ),
    r"free of charge|no charge|at no cost|for free": "free",
    r"better (?:price|deal|rate)|special (?:price|rate|deal)|money off": "discount",
    # Priced by the day, never by the hour; "day" alone is in a third of the passages.
    r"(?:day|daily|hourly) rates?|per (?:day|hour)|by the (?:day|hour)": "dayrate",
    r"(?:look|check|go) (?:over|at|into|through)|have a look": "review",
    r"up ?front|in advance": "advance",
    r"(?:can't|cannot|can not|won't|unable to) (?:make|attend|come)": "reschedule",
    r"24 ?7|around the clock|round the clock|24 hours a day": "aroundtheclock",
    # A date in a request ("move our call to next week") is a detail, not a subject.
    r"(?:next|this|last|the following|coming) (?:week|month|year)|later on|some ?time": "",
    r"proof of concept": "poc",
    r"artificial intelligence|machine learning": "ai",
    r"non ?profit|not for profit": "charity",
    r"chief technology officer|technology director|tech lead": "cto",
}

# Words visitors use for what the knowledge base calls something else. Each key is the
# knowledge base's word; both sides are stemmed, so one form of each word is enough.
_SYNONYM_TEXT = {
    "price": "cost fee rate charge expensive cheap cheaper cheapest affordable quote tariff "
    "pricey pricier ballpark",
    "pay": "payment payable paid bill billing money",
    "appointment": "meeting call session slot",
    "book": "schedule arrange reserve",
    "reschedule": "postpone rearrange",
    "human": "person agent operator representative",
    "assistant": "bot chatbot robot",
    "contact": "reach",
    "phone": "telephone tel ring",
    "email": "mail",
    "office": "address premises",
    "organisation": "organization company firm business org enterprise sme",
    "staff": "people employee headcount workforce personnel colleague coworker",
    "consultant": "developer engineer expert specialist advisor adviser",
    "timeline": "duration timeframe timescale",
    "offer": "provide",
    "service": "specialise specialize specialism speciality specialty",
    "security": "cybersecurity cyber audit",
    "automation": "automate workflow",
    "training": "course class lesson teach",
    "dashboard": "bi",
    "charity": "charitable ngo",
    "discount": "reduction reduced concession",
    "participant": "attend attendee delegate",
    "software": "crm erp saas",
    "weekend": "saturday sunday",
    "gdpr": "compliance compliant",
    "confidential": "confidentiality secret",
    "founded": "established",
}
# Places a visitor may name for work in the UK, which the knowledge base only calls "UK".
_UK_PLACES = """
uk britain british england scotland wales london manchester birmingham leeds liverpool
glasgow edinburgh cardiff newcastle sheffield nottingham leicester belfast southampton
brighton oxford cambridge exeter plymouth swindon gloucester cheltenham
"""

# Asked about, these mean a subject the knowledge base does not cover (working for the
# consultancy, someone's own tax return), even where the knowledge uses a word in another
# sense ("depending on the job"). In a question each becomes a term no passage contains.
_NOT_COVERED_TEXT = "job jobs vacancy vacancies career careers hiring recruiting tax-return"
_NOT_COVERED = frozenset(_NOT_COVERED_TEXT.split())
_NOT_COVERED_TERM = "~not-covered"

_local = threading.local()


def _stemmer() -> Stemmer.Stemmer:
    # A PyStemmer object is not safe to share between threads; one per thread is.
    stemmer: Stemmer.Stemmer | None = getattr(_local, "stemmer", None)
    if stemmer is None:
        stemmer = _local.stemmer = Stemmer.Stemmer("english")
    return stemmer


def stem(word: str) -> str:
    """The Snowball (Porter 2) English stem of ``word``: "prices", "pricing" -> "price"."""
    result: str = _stemmer().stemWord(word)
    return result


# Words whose stem is shared with another sense: Snowball makes "consultation" (a meeting
# to book) and "consultant" (a person) both "consult", and "responsible" (in charge) and
# "response" (a reply) both "respons".
_WORD_SENSES = {
    "consultation": "appointment",
    "consultations": "appointment",
    "responsible": "lead",
}


def _synonyms() -> dict[str, str]:
    table = {stem(w): stem(k) for k, ws in _SYNONYM_TEXT.items() for w in ws.split()}
    table.update((stem(w), "uk") for w in _UK_PLACES.split())
    return table


_STEMMED_SYNONYMS = _synonyms()
_PHRASE_TERMS = list(_PHRASES.values())
_PHRASE = re.compile(r"\b(?:" + "|".join(f"(?P<p{i}>{p})" for i, p in enumerate(_PHRASES)) + r")\b")


def _phrase_term(match: re.Match[str]) -> str:
    return _PHRASE_TERMS[int(str(match.lastgroup)[1:])]


def words(text: str) -> list[str]:
    """Case-folded, NFKC-normalised words of ``text``, stopwords kept."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold().replace("’", "'"))


def tokenize(text: str, *, query: bool = False) -> list[str]:
    """Index terms of ``text``: words without stop or filler words, stemmed, synonyms merged.

    With ``query``, ``text`` is a visitor's question rather than knowledge.
    """
    joined = _PHRASE.sub(_phrase_term, " ".join(words(text)))
    terms = []
    for word in joined.split():
        word = word.split("'")[0]  # "we're" -> "we", "company's" -> "company"
        if query and word in _NOT_COVERED:
            terms.append(_NOT_COVERED_TERM)
        elif word and word not in STOPWORDS and word not in _FILLER:
            stemmed = stem(_WORD_SENSES.get(word, word))
            terms.append(_STEMMED_SYNONYMS.get(stemmed, stemmed))
    return terms


class BM25Index:
    """Scores documents (lists of terms) against a weighted query with Okapi BM25 (bm25s).

    ``key_terms`` (one collection per document) are the terms a document is about, such as
    its title's; for coverage, a term found only elsewhere in it counts ``body_share``.
    """

    def __init__(
        self,
        documents: Sequence[Sequence[str]],
        *,
        key_terms: Sequence[Collection[str]] | None = None,
        body_share: float = 0.8,
        k1: float = 1.5,
        b: float = 0.75,
    ):
        self._terms = [frozenset(doc) for doc in documents]
        self._keys = self._terms if key_terms is None else [frozenset(k) for k in key_terms]
        if len(self._keys) != len(self._terms):
            raise ValueError("key_terms needs one collection per document")
        self._body_share = body_share
        df = Counter(t for terms in self._terms for t in terms)
        self._idf = {t: self._lucene_idf(n) for t, n in df.items()}
        self._unseen_idf = self._lucene_idf(0)
        self._bm25: bm25s.BM25 | None = None
        # bm25s averages document lengths, which warns on an empty corpus.
        if documents:
            self._bm25 = bm25s.BM25(k1=k1, b=b, method="lucene")
            self._bm25.index([list(doc) for doc in documents], show_progress=False)

    def __len__(self) -> int:
        return len(self._terms)

    def _lucene_idf(self, df: int) -> float:
        n = len(self._terms)
        return math.log(1.0 + (n - df + 0.5) / (df + 0.5))

    def knows(self, term: str) -> bool:
        """True when some document contains ``term``."""
        return term in self._idf

    def idf(self, term: str) -> float:
        """Lucene's always-positive IDF, as bm25s scores with; unseen terms get the highest."""
        return self._idf.get(term, self._unseen_idf)

    def scores(self, query: Mapping[str, float]) -> list[float]:
        """The BM25 score of every document; each query term counts ``weight`` times."""
        total = [0.0] * len(self._terms)
        if self._bm25 is None:
            return total
        # bm25s scores unweighted term lists, so terms of equal weight are scored together.
        by_weight: dict[float, list[str]] = {}
        for term, weight in query.items():
            by_weight.setdefault(weight, []).append(term)
        for weight, terms in by_weight.items():
            ids = self._bm25.get_tokens_ids(terms)
            if ids and weight:
                found = self._bm25.get_scores_from_ids(ids).tolist()
                total = [t + weight * s for t, s in zip(total, found, strict=True)]
        return total

    def score(self, doc: int, query: Mapping[str, float]) -> float:
        """BM25 score of document ``doc``; each query term counts ``weight`` times."""
        return self.scores(query)[doc]

    def coverage(self, doc: int, terms: Sequence[str]) -> float:
        """Share (IDF-weighted, 0..1) of ``terms`` that document ``doc`` contains.

        A word a passage only mentions in passing ("depending on the job") is weaker
        evidence that it answers the question than one it is about.
        """
        unique = set(terms)
        whole = sum(self.idf(t) for t in unique)
        found = sum(
            self.idf(t) * (1.0 if t in self._keys[doc] else self._body_share)
            for t in unique
            if t in self._terms[doc]
        )
        return found / whole if whole else 0.0

    def search(self, query: Mapping[str, float], limit: int = 3) -> list[tuple[int, float]]:
        """The best ``limit`` (document, score) pairs with a positive score, best first.

        Ties keep document order, so the same query always gives the same answer.
        """
        scored = self.scores(query)
        ranked = sorted((p for p in enumerate(scored) if p[1] > 0), key=lambda p: -p[1])
        return ranked[:limit]
