"""BM25 retrieval and text normalisation over the shipped knowledge base."""

from __future__ import annotations

import math

import pytest

from chatwatch.chat.knowledge import Passage, load_passages, parse_passages
from chatwatch.chat.retrieval import BM25Index, stem, tokenize


def _index() -> tuple[tuple[Passage, ...], BM25Index]:
    passages = load_passages()
    # Built as BuiltinProvider builds it.
    return passages, BM25Index(
        [tokenize(p.search_text) for p in passages],
        key_terms=[tokenize(f"{p.title}\n{p.keywords}") for p in passages],
    )


def _best(question: str) -> Passage:
    passages, index = _index()
    hits = index.search(dict.fromkeys(tokenize(question, query=True), 1.0), limit=1)
    assert hits, f"nothing found for {question!r}"
    return passages[hits[0][0]]


def test_knowledge_base_loads_from_package() -> None:
    """The Markdown files ship with the package and split into many titled passages."""
    passages = load_passages()
    topics = {p.topic for p in passages}
    assert {"services", "pricing", "booking", "contact", "about", "privacy"} <= topics
    assert len(passages) >= 30
    assert all(p.title and p.text and "##" not in p.text for p in passages)
    assert len({p.id for p in passages}) == len(passages)


def test_parse_passages_splits_on_headings() -> None:
    """Each ``## `` heading starts a passage; text before it belongs to the ``#`` title."""
    doc = "# Topic\nIntro line.\n\n## First part\nAlpha\nbeta.\n\n\n\nGamma.\n## Second\nDelta.\n"
    passages = parse_passages("demo", doc)
    assert [(p.id, p.title) for p in passages] == [
        ("demo/topic", "Topic"),
        ("demo/first-part", "First part"),
        ("demo/second", "Second"),
    ]
    assert passages[1].text == "Alpha\nbeta.\n\nGamma."


def test_stemming_merges_inflections() -> None:
    """Plural, -ing and -ed forms reduce to one stem so they match each other."""
    assert stem("prices") == stem("pricing") == stem("priced") == stem("price")
    assert stem("migration") == stem("migrate")
    assert stem("cancelled") == stem("cancelling") == stem("cancel")
    assert stem("planning") == "plan"


def test_tokenize_drops_stopwords_and_maps_synonyms() -> None:
    """Filler words vanish, and "cost"/"how much" mean the same as "price"."""
    assert tokenize("What are your prices?") == tokenize("What does it cost?")
    assert tokenize("how much?") == tokenize("price")
    assert tokenize("what is the, and a") == []
    assert tokenize("We’re here") == tokenize("We're here") == []


def test_synonyms_and_phrases_meet_the_knowledge_words() -> None:
    """Visitors' words for a thing reduce to the term the knowledge base uses for it."""
    price = tokenize("price")
    for said in ("cost", "fees", "charging", "rates", "how much", "cheaper"):
        assert tokenize(said) == price, said
    assert tokenize("schedule an appointment") == tokenize("book a meeting")
    assert tokenize("GDPR compliance") == tokenize("gdpr compliant")
    assert tokenize("Manchester") == tokenize("UK")
    assert tokenize("hourly rate") == tokenize("day rate") != tokenize("day")


def test_word_senses_kept_apart() -> None:
    """Words sharing a stem but not a meaning stay apart: a consultation is not a consultant."""
    assert tokenize("consultation") != tokenize("consultant")
    assert tokenize("fixed price") != tokenize("fix price")
    # Asked about, a job is a vacancy, which no passage covers, not a piece of work.
    assert tokenize("job openings", query=True) != tokenize("job openings")
    assert not set(tokenize("job", query=True)) & set(tokenize("Depending on the job"))


def test_filler_words_name_no_topic() -> None:
    """Conversational words and weekdays are dropped, so they cannot go unanswered."""
    assert tokenize("So what do you guys actually do?") == tokenize("what do you do")
    assert tokenize("book a call next Tuesday") == tokenize("book a call next")


def test_tokenize_handles_any_unicode() -> None:
    """Non-Latin scripts and emoji are tokenized without errors."""
    assert tokenize("Grüße 日本語 🙂 Ünïcödé") == [
        "grüsse",
        "日本語",
        "ünïcödé",
    ]  # casefold: ß -> ss
    assert tokenize("\ud800 broken surrogate") == tokenize("broken surrogate") != []


@pytest.mark.parametrize(
    ("question", "passage_id"),
    [
        ("What are your prices?", "pricing/our-prices"),
        ("How much does a cloud migration cost?", "pricing/cloud-migration-pricing"),
        ("What services do you offer?", "services/our-services"),
        ("How do I book a consultation?", "booking/how-to-book-a-consultation"),
        ("When are you open? What are your opening hours?", "hours/opening-hours"),
        ("Can I cancel my appointment?", "booking/rescheduling-or-cancelling-an-appointment"),
        ("Is my data safe? GDPR?", "privacy/data-privacy-and-gdpr"),
        ("Who is on your team?", "about/our-team"),
        ("How much do you charge per day for a developer?", "pricing/our-prices"),
        ("Are you GDPR compliant?", "privacy/data-privacy-and-gdpr"),
        ("How do I pay — invoice?", "pricing/payment-terms"),
        ("I'd like to book a call with someone next Tuesday", "booking/how-to-book-a-consultation"),
    ],
)
def test_questions_find_the_right_passage(question: str, passage_id: str) -> None:
    """Typical visitor questions rank the passage that answers them first."""
    assert _best(question).id == passage_id


def test_bm25_prefers_rarer_terms_and_ignores_unknown_ones() -> None:
    """A rare matching term outranks a common one; a query of unknown words finds nothing."""
    docs = [["cloud", "cost"], ["cost", "team"], ["cost", "hours"]]
    index = BM25Index(docs)
    ranked = index.search({"cloud": 1.0, "cost": 1.0})
    assert ranked[0][0] == 0
    assert index.idf("cloud") > index.idf("cost") > 0
    assert index.search({"zebra": 1.0}) == []


def test_bm25_weights_scale_scores() -> None:
    """A query term weighted 0.5 contributes exactly half its full-weight score."""
    index = BM25Index([["cloud", "migr"], ["team"]])
    assert math.isclose(index.score(0, {"cloud": 0.5}), index.score(0, {"cloud": 1.0}) / 2)


def test_coverage_counts_a_passing_mention_less() -> None:
    """A term only in a document's body counts ``body_share`` of one among its key terms."""
    index = BM25Index([["cloud", "migr"], ["team"]], key_terms=[["cloud"], ["team"]])
    assert index.coverage(0, ["cloud"]) == 1.0
    assert math.isclose(index.coverage(0, ["migr"]), 0.8)
    with pytest.raises(ValueError, match="key_terms"):
        BM25Index([["cloud"]], key_terms=[])


def test_coverage_is_idf_weighted_share() -> None:
    """Coverage is 1 when a document holds every term and drops with unknown terms."""
    index = BM25Index([["cloud", "migr"], ["team"]])
    assert index.coverage(0, ["cloud", "migr"]) == 1.0
    assert 0 < index.coverage(0, ["cloud", "unknownword"]) < 1
    assert index.coverage(1, ["cloud"]) == 0.0
    assert index.coverage(0, []) == 0.0


def test_search_is_deterministic_on_ties() -> None:
    """Equal scores keep document order, so repeated searches give the same ranking."""
    index = BM25Index([["a1"], ["a1"], ["a1"]])
    assert index.search({"a1": 1.0}) == index.search({"a1": 1.0})
    assert [doc for doc, _ in index.search({"a1": 1.0})] == [0, 1, 2]


def test_empty_index_is_harmless() -> None:
    """An index with no documents answers every query with nothing."""
    index = BM25Index([])
    assert len(index) == 0
    assert index.search({"cloud": 1.0}) == []


def test_keywords_lines_are_indexed_but_not_shown() -> None:
    """A ``Keywords:`` line helps find its passage but never becomes part of its text."""
    doc = "# T\n## Paying us\nKeywords: invoice, card\nInvoices are due in 30 days.\n## Next\nX.\n"
    first, second = parse_passages("demo", doc)
    assert first.text == "Invoices are due in 30 days."
    assert first.keywords == "invoice, card"
    assert "card" in first.search_text
    assert second.keywords == ""
    assert all("Keywords:" not in p.text for p in load_passages())
