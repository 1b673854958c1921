"""PriceBook: configured prices, genai-prices' bundled table, and unknown models."""

from __future__ import annotations

import socket
import threading

import genai_prices
import pytest

from chatwatch.chat.pricing import PriceBook
from chatwatch.config import AIPrice


def _table_price(model: str, provider_id: str, input_tokens: int, output_tokens: int) -> float:
    usage = genai_prices.Usage(input_tokens=input_tokens, output_tokens=output_tokens)
    return float(genai_prices.calc_price(usage, model, provider_id=provider_id).total_price)


def test_gpt_4o_mini_priced_from_genai_prices() -> None:
    """A known OpenAI model costs exactly what genai-prices computes, and is priced."""
    cost, priced = PriceBook().cost("openai", "gpt-4o-mini", 12_000, 3_000)
    assert priced is True
    assert cost > 0
    assert cost == pytest.approx(_table_price("gpt-4o-mini", "openai", 12_000, 3_000))


def test_override_wins_over_the_table() -> None:
    """A configured price replaces the table's, case-insensitively on the model name."""
    book = PriceBook({"GPT-4o-mini": AIPrice(input_per_mtok=1.0, output_per_mtok=2.0)})
    assert book.cost("openai", "gpt-4o-mini", 1_000_000, 500_000) == (2.0, True)


def test_unknown_model_costs_nothing_and_is_unpriced() -> None:
    """A model found nowhere gives (0.0, False)."""
    assert PriceBook().cost("openai", "llama3.1:8b-local-only", 1000, 1000) == (0.0, False)


def test_builtin_consultant_is_free_but_priced() -> None:
    """The builtin model is priced at zero rather than reported as unknown."""
    assert PriceBook().cost("builtin", "chatwatch-consultant", 5000, 5000) == (0.0, True)


def test_builtin_price_can_be_overridden() -> None:
    """Configured prices win over the built-in defaults too."""
    book = PriceBook({"chatwatch-consultant": AIPrice(input_per_mtok=10, output_per_mtok=0)})
    assert book.cost("builtin", "chatwatch-consultant", 100_000, 0) == (1.0, True)


def test_openai_compatible_server_model_found_across_providers() -> None:
    """An 'openai' server serving another vendor's model is priced from that vendor."""
    cost, priced = PriceBook().cost("openai", "claude-3-5-haiku-latest", 10_000, 1_000)
    assert priced is True
    assert cost == pytest.approx(
        _table_price("claude-3-5-haiku-latest", "anthropic", 10_000, 1_000)
    )


def test_gateway_vendor_prefix_is_understood() -> None:
    """'openai/gpt-4o-mini' (LiteLLM/OpenRouter style) costs the same as 'gpt-4o-mini'."""
    book = PriceBook()
    assert book.cost("openai", "openai/gpt-4o-mini", 1000, 1000) == book.cost(
        "openai", "gpt-4o-mini", 1000, 1000
    )


def test_repeated_lookups_agree() -> None:
    """Cached resolution returns the same answer as the first look-up, scaled by tokens."""
    book = PriceBook()
    first, _ = book.cost("openai", "gpt-4o-mini", 1000, 0)
    second, _ = book.cost("openai", "gpt-4o-mini", 2000, 0)
    assert second == pytest.approx(2 * first)


def test_pricing_needs_no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Prices come from the bundled table: no socket is opened and no updater thread runs."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("pricing tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    cost, priced = PriceBook().cost("openai", "gpt-4o", 1000, 1000)
    assert priced and cost > 0
    assert not any(t.name.startswith("genai_prices") for t in threading.enumerate())
