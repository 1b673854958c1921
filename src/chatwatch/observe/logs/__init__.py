"""Logs: the structlog pipeline, redaction, event records, the store and its query language.

``get_logger(component)`` is the one way chatwatch code gets a logger; third-party
libraries' stdlib records pass through the same pipeline.
"""

from chatwatch.observe.logs.pipeline import get_logger

__all__ = ["get_logger"]
