"""What an AI reply cost, in USD: configured prices first, then genai-prices' bundled table.

genai-prices only fetches newer prices when ``genai_prices.UpdatePrices`` is started;
chatwatch never starts it, so look-ups use the table shipped with the installed package
and never touch the network.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import genai_prices
from genai_prices import data_snapshot

from chatwatch.config import AIPrice
from chatwatch.observe.logs import get_logger

__all__ = ["BUILTIN_PRICES", "PriceBook"]

_log = get_logger("ai")

# The offline consultant costs nothing; listing it makes its replies priced, not unknown.
BUILTIN_PRICES: Mapping[str, AIPrice] = {
    "chatwatch-consultant": AIPrice(input_per_mtok=0.0, output_per_mtok=0.0),
}

_MTOK = 1_000_000
_MAX_RESOLVED = 1024


@dataclass(frozen=True, slots=True)
class _TableRef:
    """Where a model was found in the genai-prices table."""

    provider_id: str
    model_ref: str


class PriceBook:
    """Prices replies; resolves each (provider, model) once, then reuses the answer."""

    def __init__(self, overrides: Mapping[str, AIPrice] | None = None) -> None:
        merged = {**BUILTIN_PRICES, **(overrides or {})}
        # Model names from config and from servers differ in case only too often.
        self._overrides = {name.casefold(): price for name, price in merged.items()}
        self._resolved: dict[tuple[str, str], AIPrice | _TableRef | None] = {}

    def cost(
        self, provider: str, model: str, input_tokens: int, output_tokens: int
    ) -> tuple[float, bool]:
        """USD cost of one call and whether the model has a price (unknown → (0.0, False))."""
        key = (provider, model)
        try:
            source = self._resolved[key]
        except KeyError:
            if len(self._resolved) >= _MAX_RESOLVED:
                self._resolved.clear()  # model names come from upstream replies: stay bounded
            source = self._resolved[key] = self._resolve(provider, model)
        if source is None:
            return 0.0, False
        if isinstance(source, AIPrice):
            usd = (
                input_tokens * source.input_per_mtok + output_tokens * source.output_per_mtok
            ) / _MTOK
            return usd, True
        usage = genai_prices.Usage(input_tokens=input_tokens, output_tokens=output_tokens)
        try:
            # Not cached: a price may depend on the date or on the number of tokens (tiers).
            result = genai_prices.calc_price(
                usage, source.model_ref, provider_id=source.provider_id
            )
        except (LookupError, ValueError) as exc:
            _log.warning("ai.pricing_failed", provider=provider, model=model, error=str(exc))
            return 0.0, False
        return float(result.total_price), True

    def _resolve(self, provider: str, model: str) -> AIPrice | _TableRef | None:
        override = self._overrides.get(model.casefold())
        if override is not None:
            return override
        ref = _find_in_table(provider, model)
        if ref is None:
            # Debug only: the caller counts unpriced replies and warns once per model.
            _log.debug("ai.price_unknown", provider=provider, model=model)
        return ref


def _find_in_table(provider: str, model: str) -> _TableRef | None:
    """Find ``model`` in genai-prices, trusting ``provider`` first, then any provider."""
    candidates: list[tuple[str | None, str]] = [(provider, model), (None, model)]
    # Gateways (LiteLLM, OpenRouter) name models "vendor/model".
    vendor, slash, bare = model.partition("/")
    if slash and bare:
        candidates += [(vendor, bare), (None, bare)]
    probe = genai_prices.Usage(input_tokens=1, output_tokens=1)
    for provider_id, model_ref in candidates:
        try:
            found = genai_prices.calc_price(probe, model_ref, provider_id=provider_id)
        except LookupError:
            continue
        return _TableRef(found.provider.id, model_ref)
    # "openai" here means any OpenAI-compatible server, so look the model up everywhere.
    providers = data_snapshot.get_snapshot().providers
    for model_ref in dict.fromkeys(ref for _, ref in candidates):
        for table_provider in providers:
            if table_provider.find_model(model_ref, all_providers=providers) is not None:
                return _TableRef(table_provider.id, model_ref)
    return None
