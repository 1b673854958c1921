"""The one boundary every notification leaves through: a ``Channel`` with one async method.

Like an httpx transport: ``send(notification)`` either returns (delivered) or raises
``DeliveryError`` saying whether trying again may help. HTTP channels share the POST,
the ``Idempotency-Key`` header and the classification of failures; each kind only renders
its own body.

Failure classes: timeouts, connection errors, 408, 425, 429 and 5xx are worth a retry;
any other 4xx means the receiver refuses this body and retrying cannot change that.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import httpx
import orjson

from chatwatch.alerts.notification import Notification
from chatwatch.config import AlertChannelSettings

__all__ = ["RETRYABLE_STATUS", "Channel", "DeliveryError", "HttpChannel"]

RETRYABLE_STATUS = frozenset({408, 425, 429})
_USER_AGENT = "chatwatch-alerts/0.1"


class DeliveryError(Exception):
    """A delivery attempt failed; ``retryable`` says whether a later attempt may succeed."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class Channel(ABC):
    """A configured notification target."""

    def __init__(self, settings: AlertChannelSettings, *, timeout: float = 10.0) -> None:
        self.settings = settings
        self.name = settings.name
        self.kind = settings.kind
        self.timeout = timeout

    def accepts(self, severity: str, alert_type: str) -> bool:
        """True when the channel's ``severities``/``types`` filters let this alert through."""
        s = self.settings
        if s.severities is not None and severity not in s.severities:
            return False
        return s.types is None or alert_type in s.types

    @abstractmethod
    async def send(self, notification: Notification) -> None:
        """Deliver one notification, or raise DeliveryError."""

    async def aclose(self) -> None:  # noqa: B027 - most channels hold nothing to release
        """Release connections."""


class HttpChannel(Channel):
    """A channel that POSTs a JSON body to ``url``."""

    def __init__(
        self,
        settings: AlertChannelSettings,
        *,
        timeout: float = 10.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(settings, timeout=timeout)
        assert settings.url is not None  # checked by AlertChannelSettings
        self.url = settings.url
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(
            timeout=timeout, follow_redirects=False, headers={"User-Agent": _USER_AGENT}
        )

    @abstractmethod
    def body(self, notification: Notification) -> dict[str, Any]:
        """The JSON body this kind of receiver understands."""

    def headers(self, notification: Notification, body: bytes) -> dict[str, str]:
        """Headers of one delivery (the same on every retry of one notification)."""
        return {"Content-Type": "application/json", "Idempotency-Key": notification.id}

    async def send(self, notification: Notification) -> None:
        """POST the body; 2xx is delivered, anything else a DeliveryError."""
        body = orjson.dumps(self.body(notification))
        try:
            response = await self._client.post(
                self.url,
                content=body,
                headers=self.headers(notification, body),
                timeout=self.timeout,
            )
        except httpx.TimeoutException as err:
            raise DeliveryError(f"timed out after {self.timeout:g}s", retryable=True) from err
        except httpx.HTTPError as err:
            raise DeliveryError(f"{type(err).__name__}: {err}"[:300], retryable=True) from err
        status = response.status_code
        if 200 <= status < 300:
            return
        retryable = status >= 500 or status in RETRYABLE_STATUS
        raise DeliveryError(
            f"HTTP {status}: {response.text[:200]}",
            retryable=retryable,
        )

    async def aclose(self) -> None:
        """Close the HTTP client if this channel made it."""
        if self._own_client:
            await self._client.aclose()
