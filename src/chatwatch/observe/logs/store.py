"""The log store: records queued off the request path, written in batches, searchable.

``submit`` is called by the logging pipeline for every record, from any thread; it only
appends to a bounded queue (never blocks) or, when full, sheds one record and counts the
drop — the record has reached stdout either way. What is shed is the least valuable:
debug/info before warnings before errors, and within a level the records an abusive
client makes by the thousand (``message.rejected``, ``security.*``) first (issue 8), so a
flood of junk cannot push an error out of the store. One task (``run``) drains the queue
in batches with one ``executemany`` each; another deletes expired records in small
chunks, so a purge never holds the database for long and ingest goes on between chunks.

Ids encode time (see ``chatwatch.store.log_tables``): ``(microseconds << 10) | node``,
made strictly increasing per writer. The node (random per process) keeps writers that
share a database apart; on the rare clash the batch is retried under a new node.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import threading
from collections import deque
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import insert, text
from sqlalchemy.exc import IntegrityError

from chatwatch.clock import Clock
from chatwatch.observe.logs.pipeline import LEVELS, LogMetrics, get_logger
from chatwatch.observe.logs.query import LogFilters, encode_cursor, to_fts5, to_tsquery
from chatwatch.store.db import Database
from chatwatch.store.log_tables import ID_NODE_BITS, log_records
from chatwatch.timefmt import format_time

__all__ = ["LogStore", "SheddingQueue", "shedding_tier"]

_NODE_MASK = (1 << ID_NODE_BITS) - 1
_STEP = 1 << ID_NODE_BITS
_MAX_ID = 2**63 - 1
_SEARCH_TEXT_KEYS = ("message", "detail", "error.type", "error.message")
_BUCKETS = (60, 300, 900, 1800, 3600, 10800, 21600, 43200, 86400, 604800)
_MAX_BUCKETS = 60
_WRITE_ATTEMPTS = 4
_ID_SKEW = 60.0  # how far ahead of its timestamp an out-of-order record's id may be
_SQLITE_ROWS_PER_INSERT = 1000  # 10 parameters a row, under SQLite's 32,766 limit
_COLUMNS = "id, ts, level, event, component, correlation_id, user_id, session_id, message, data"

_log = get_logger("logstore")


def time_to_id(ts: float) -> int:
    """The smallest record id at or after ``ts`` (capped at the largest BIGINT: ids end
    in the year 2255, and a later bound must not overflow the database's integer)."""
    return min(int(ts * 1_000_000), _MAX_ID >> ID_NODE_BITS) << ID_NODE_BITS


@functools.lru_cache(maxsize=64)
def _sqlite_insert(rows: int) -> str:
    """INSERT of ``rows`` rows in one statement."""
    values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * rows)
    return f"INSERT INTO log_records ({_COLUMNS}) VALUES {values}"


# Shedding tiers, least valuable first: an incoming record may evict a queued record of a
# lower tier; errors (the top tier) are never evicted, only refused when all are errors.
_TOP_TIER = 4
_TIER_OF_LEVEL = {"debug": 0, "info": 0, "warning": 2, "error": _TOP_TIER, "critical": _TOP_TIER}


def shedding_tier(record: dict[str, Any]) -> int:
    """0 noisy debug/info, 1 debug/info, 2 noisy warnings, 3 warnings, 4 errors.

    Noisy: one bad frame's ``message.rejected`` or a ``security.*`` event, which an abusive
    client causes at its own rate; the metrics count every one of them anyway.
    """
    level = record.get("level")
    base = _TIER_OF_LEVEL.get(level, 0) if isinstance(level, str) else 0
    if base == _TOP_TIER:
        return base
    event = record.get("event")
    if event == "message.rejected" or (isinstance(event, str) and event.startswith("security.")):
        return base
    return base + 1


class SheddingQueue:
    """A bounded FIFO of records that, when full, drops the least valuable record.

    Thread-safe (one short lock per call: records come from any thread). An evicted record
    is emptied in place and skipped by ``take``, so eviction is O(1); the entries it
    leaves are at most ``capacity`` more than the live records.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: deque[dict[str, Any] | asyncio.Future[None]] = deque()
        # The live records of each evictable tier, oldest first (their order in _items).
        self._tiers: tuple[deque[dict[str, Any]], ...] = tuple(deque() for _ in range(_TOP_TIER))
        self._live = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """Entries waiting: records, flush markers and evicted places alike."""
        return len(self._items)

    @property
    def live(self) -> int:
        """Records waiting to be written."""
        return self._live

    def offer(self, record: dict[str, Any]) -> str | None:
        """Queue ``record``; the level of the record dropped to make room (or of this one)."""
        tier = shedding_tier(record)
        dropped: str | None = None
        with self._lock:
            if self._live >= self.capacity:
                dropped = self._evict_below(tier)
                if dropped is None:
                    return _level_name(record)
            self._items.append(record)
            self._live += 1
            if tier < _TOP_TIER:
                self._tiers[tier].append(record)
        return dropped

    def add_marker(self, marker: asyncio.Future[None]) -> None:
        """Queue a flush marker (never refused, never shed)."""
        with self._lock:
            self._items.append(marker)

    def take(self, n: int) -> tuple[list[dict[str, Any]], list[asyncio.Future[None]]]:
        """Up to ``n`` records, oldest first, stopping after a flush marker if one comes."""
        batch: list[dict[str, Any]] = []
        markers: list[asyncio.Future[None]] = []
        with self._lock:
            items = self._items
            while items and len(batch) < n:
                item = items.popleft()
                if isinstance(item, asyncio.Future):
                    markers.append(item)
                    break
                if not item:
                    continue  # evicted: emptied in place by _evict_below
                self._live -= 1
                tier = shedding_tier(item)
                if tier < _TOP_TIER:
                    refs = self._tiers[tier]
                    if refs and refs[0] is item:
                        refs.popleft()
                batch.append(item)
        return batch, markers

    def clear(self) -> None:
        """Forget every queued record (markers included)."""
        with self._lock:
            self._items.clear()
            for refs in self._tiers:
                refs.clear()
            self._live = 0

    def _evict_below(self, tier: int) -> str | None:
        for lower in range(tier):
            refs = self._tiers[lower]
            if refs:
                victim = refs.popleft()
                level = _level_name(victim)
                victim.clear()
                self._live -= 1
                return level
        return None


def _level_name(record: dict[str, Any]) -> str:
    level = record.get("level")
    return level if isinstance(level, str) and level in _TIER_OF_LEVEL else "info"


def _text(value: Any, limit: int) -> str | None:
    if value is None:
        return None
    return (value if isinstance(value, str) else str(value))[:limit]


class LogStore:
    """Batched, bounded, searchable storage of log records."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        queue_size: int = 10_000,
        batch_size: int = 500,
        retention_days: float = 7.0,
        metrics: LogMetrics | None = None,
        flush_interval: float = 0.5,
        retention_interval: float = 600.0,
        delete_chunk: int = 2_000,
        max_search_text: int = 512,
        retry_delay: float = 0.2,
    ) -> None:
        self.db = db
        self.clock = clock
        self.queue_size = queue_size
        self.batch_size = batch_size
        self.retention_days = retention_days
        self.metrics = metrics
        self.flush_interval = flush_interval
        self.retention_interval = retention_interval
        self.delete_chunk = delete_chunk
        self.max_search_text = max_search_text
        self.retry_delay = retry_delay
        self._queue = SheddingQueue(queue_size)
        self._node = random.randrange(_STEP)
        self._last_id = 0
        self._wakeup: asyncio.Event | None = None
        self._loop_thread: int | None = None
        self._closed = False
        self._writer: asyncio.Task[None] | None = None
        self._janitor: asyncio.Task[None] | None = None
        self._write_lock = asyncio.Lock()

    # --- ingest ------------------------------------------------------------------------

    def submit(self, record: dict[str, Any]) -> None:
        """Queue ``record`` for storage; never blocks; when full, sheds and counts a drop."""
        queue = self._queue
        if self._closed:
            if self.metrics is not None:
                self.metrics.count_dropped()
            return
        dropped = queue.offer(record)
        if dropped is not None and self.metrics is not None:
            self.metrics.count_dropped(level=dropped)
        # Waking the writer early is only safe (and only needed) from the loop's thread;
        # other threads' records are picked up within flush_interval.
        if (
            len(queue) >= self.batch_size
            and self._wakeup is not None
            and threading.get_ident() == self._loop_thread
        ):
            self._wakeup.set()

    @property
    def pending(self) -> int:
        """Records waiting to be written."""
        return self._queue.live

    async def start(self) -> None:
        """Start the writer and the retention tasks."""
        if self._writer is None:
            self._writer = asyncio.create_task(self.run(), name="logstore-writer")
        if self._janitor is None:
            self._janitor = asyncio.create_task(self._retention_loop(), name="logstore-retention")

    async def run(self) -> None:
        """Write queued records in batches until ``close``."""
        self._loop_thread = threading.get_ident()
        self._wakeup = wakeup = asyncio.Event()
        while True:
            if not self._queue:
                if self._closed:
                    return
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.flush_interval):
                        await wakeup.wait()
                wakeup.clear()
                continue
            await self._write_next()

    async def flush(self) -> None:
        """Return once every record submitted before this call is written (or dropped)."""
        if self._writer is None or self._writer.done() or self._wakeup is None:
            while self._queue:
                await self._write_next()
            return
        marker: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.add_marker(marker)
        self._wakeup.set()
        await marker

    async def close(self) -> None:
        """Stop taking records, write what is queued, stop the background tasks."""
        self._closed = True
        if self._janitor is not None:
            self._janitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._janitor
        if self._writer is not None and not self._writer.done():
            if self._wakeup is not None:
                self._wakeup.set()
            await self._writer
        while self._queue:
            await self._write_next()

    async def _write_next(self) -> None:
        queue = self._queue
        batch, markers = queue.take(self.batch_size)
        try:
            if batch:
                await self._write(batch)
        finally:
            for marker in markers:
                if not marker.done():
                    marker.set_result(None)
            if self.metrics is not None:
                self.metrics.queue_depth.set(queue.live)

    async def _write(self, batch: list[dict[str, Any]]) -> None:
        rows = []
        for record in batch:
            try:
                rows.append(self._row(record))
            except Exception:  # one odd record must not sink its batch
                if self.metrics is not None:
                    self.metrics.count_dropped()
        if not rows:
            return
        error: BaseException | None = None
        for attempt in range(_WRITE_ATTEMPTS):
            if attempt:
                await asyncio.sleep(self.retry_delay * 2 ** (attempt - 1))
            try:
                async with self._write_lock:
                    if self.metrics is not None:
                        with self.metrics.write_seconds.time():
                            await self._insert(rows)
                        self.metrics.stored.inc(len(rows))
                    else:
                        await self._insert(rows)
                return
            except asyncio.CancelledError:
                raise
            except IntegrityError as exc:
                # Another writer used the same node in the same microsecond: move away.
                error = exc
                self._node = random.randrange(_STEP)
                self._last_id = 0
                rows = [(self._next_id(row[1]), *row[1:]) for row in rows]
            except Exception as exc:
                error = exc
        if self.metrics is not None:
            self.metrics.count_dropped(len(rows))
        _log.error("logstore.write_failed", records=len(rows), exc_info=error, _skip_store=True)

    async def _insert(self, rows: list[tuple[Any, ...]]) -> None:
        async with self.db.engine.begin() as conn:
            if self.db.dialect == "sqlite":
                # One multi-row INSERT per chunk, not executemany: executemany re-takes the
                # GIL between rows, and on a busy event loop each re-take waits for the
                # loop thread's switch interval (measured: 4k rows/s against 36k/s).
                for i in range(0, len(rows), _SQLITE_ROWS_PER_INSERT):
                    chunk = rows[i : i + _SQLITE_ROWS_PER_INSERT]
                    params = tuple(value for row in chunk for value in row)
                    await conn.exec_driver_sql(_sqlite_insert(len(chunk)), params)
            else:
                keys = [c.name for c in log_records.columns]
                await conn.execute(
                    insert(log_records), [dict(zip(keys, r, strict=True)) for r in rows]
                )

    def _next_id(self, ts: float) -> int:
        candidate = time_to_id(ts) | self._node
        if candidate <= self._last_id:
            candidate = self._last_id + _STEP
        self._last_id = candidate
        return candidate

    def _row(self, record: dict[str, Any]) -> tuple[Any, ...]:
        stamp = record.get("timestamp")
        ts = datetime.fromisoformat(stamp).timestamp() if isinstance(stamp, str) else None
        if ts is None:
            ts = self.clock.time()
        texts = [v for k in _SEARCH_TEXT_KEYS if isinstance(v := record.get(k), str) and v]
        return (
            self._next_id(ts),
            ts,
            _text(record.get("level"), 16) or "info",
            _text(record.get("event"), 128) or "",
            _text(record.get("component"), 64),
            _text(record.get("correlation_id"), 64),
            _text(record.get("user_id"), 128),
            _text(record.get("session_id"), 128),
            " ".join(texts)[: self.max_search_text] if texts else None,
            orjson.dumps(record, default=str).decode(),
        )

    # --- retention ---------------------------------------------------------------------

    async def _retention_loop(self) -> None:
        while True:
            try:
                await self.purge_expired()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _log.error("logstore.retention_failed", exc_info=exc, _skip_store=True)
            await asyncio.sleep(self.retention_interval)

    async def purge_expired(self) -> int:
        """Delete records older than ``retention_days``, a chunk at a time; returns how many."""
        cutoff = time_to_id(self.clock.time() - self.retention_days * 86400.0)
        if self.db.dialect == "sqlite":
            statement = text(
                "DELETE FROM log_records WHERE id IN (SELECT id FROM log_records"
                " WHERE id < :cutoff ORDER BY id LIMIT :n)"
            )
        else:
            statement = text(
                "DELETE FROM log_records WHERE id IN (SELECT id FROM log_records"
                " WHERE id < :cutoff ORDER BY id LIMIT :n FOR UPDATE SKIP LOCKED)"
            )
        deleted = 0
        while True:
            async with self._write_lock, self.db.engine.begin() as conn:
                result = await conn.execute(statement, {"cutoff": cutoff, "n": self.delete_chunk})
            count = result.rowcount or 0
            deleted += count
            if count < self.delete_chunk:
                return deleted
            await asyncio.sleep(0)  # let queued batches in between chunks

    # --- search ------------------------------------------------------------------------

    async def search(
        self, filters: LogFilters, cursor: int | None = None, limit: int = 100
    ) -> dict[str, Any]:
        """Records matching every filter, newest first: ``{"items", "next_cursor"}``."""
        await self.flush()  # read your writes: what was logged before the search is found
        sql, params = self._search_sql(filters, cursor, limit + 1)
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(text(sql), params)).all()
        items = []
        for record_id, data in rows[:limit]:
            item = orjson.loads(data)
            item["id"] = str(record_id)
            items.append(item)
        next_cursor = encode_cursor(rows[limit - 1][0]) if len(rows) > limit else None
        return {"items": items, "next_cursor": next_cursor}

    def _search_sql(
        self, f: LogFilters, cursor: int | None, fetch: int
    ) -> tuple[str, dict[str, Any]]:
        sqlite = self.db.dialect == "sqlite"
        params: dict[str, Any] = {"fetch": fetch}
        where: list[str] = []
        use_fts = sqlite and (f.text is not None or f.correlation_id is not None)
        key = "f.rowid" if use_fts else "r.id"
        # The id range finds the rows fast; the ts test makes the range exact (a record
        # written out of order has an id a little later than its timestamp).
        if f.since is not None:
            where += [f"{key} >= :lo", "r.ts >= :since"]
            params.update(lo=time_to_id(f.since), since=f.since)
        if f.until is not None:
            where += [f"{key} < :hi", "r.ts < :until"]
            params.update(hi=time_to_id(f.until + _ID_SKEW), until=f.until)
        if cursor is not None:
            where.append(f"{key} < :cursor")
            params["cursor"] = cursor
        if f.levels:
            where.append(_in("r.level", "lvl", f.levels, params))
        if f.components:
            where.append(_in("r.component", "cmp", f.components, params))
        if f.event is not None:
            where.append("r.event = :event")
            params["event"] = f.event
        if f.event_family is not None:
            where.append("r.event LIKE :family ESCAPE '\\'")
            family = f.event_family.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            params["family"] = family + ".%"
        for name in ("user_id", "session_id", "correlation_id"):
            value = getattr(f, name)
            if value is not None:
                where.append(f"r.{name} = :{name}")
                params[name] = value
        if use_fts:
            match = []
            if f.text is not None:
                match.append("{event message} : " + to_fts5(f.text))
            if f.correlation_id is not None:
                match.append('{correlation_id} : "' + f.correlation_id.replace('"', '""') + '"')
            where.append("log_fts MATCH :match")
            params["match"] = " AND ".join(f"({m})" for m in match)
            source = "log_fts f JOIN log_records r ON r.id = f.rowid"
        else:
            if f.text is not None:
                where.append("r.tsv @@ " + to_tsquery(f.text, params))
            source = "log_records r"
        clause = " WHERE " + " AND ".join(where) if where else ""
        return f"SELECT r.id, r.data FROM {source}{clause} ORDER BY {key} DESC LIMIT :fetch", params

    # --- statistics --------------------------------------------------------------------

    async def stats(self, since: float | None = None, until: float | None = None) -> dict[str, Any]:
        """Counts by level, component and event family, and the error rate per time bucket."""
        await self.flush()
        until = self.clock.time() if until is None else until
        since = until - 86400.0 if since is None else since
        span = max(until - since, 1.0)
        bucket = next((b for b in _BUCKETS if span / b <= _MAX_BUCKETS), _BUCKETS[-1])
        if self.db.dialect == "sqlite":
            bucket_expr = "CAST(ts / :bucket AS INTEGER)"
        else:
            bucket_expr = "CAST(floor(ts / :bucket) AS BIGINT)"
        sql = (
            f"SELECT level, component, event, {bucket_expr} AS b, COUNT(*) FROM log_records"
            " WHERE id >= :lo AND id < :hi AND ts >= :since AND ts < :until"
            " GROUP BY level, component, event, b"
        )
        params = {
            "lo": time_to_id(since),
            "hi": time_to_id(until + _ID_SKEW),
            "since": since,
            "until": until,
            "bucket": bucket,
        }
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(text(sql), params)).all()
        return _summarise(rows, since, until, bucket)


def _in(column: str, prefix: str, values: Sequence[str], params: dict[str, Any]) -> str:
    names = []
    for i, value in enumerate(values):
        params[f"{prefix}{i}"] = value
        names.append(f":{prefix}{i}")
    return f"{column} IN ({', '.join(names)})"


def _summarise(rows: Sequence[Any], since: float, until: float, bucket: int) -> dict[str, Any]:
    by_level = dict.fromkeys(LEVELS, 0)
    by_component: dict[str, int] = {}
    by_family: dict[str, int] = {}
    totals: dict[int, list[int]] = {}
    total = 0
    for level, component, event, b, count in rows:
        total += count
        by_level[level] = by_level.get(level, 0) + count
        name = component or "unknown"
        by_component[name] = by_component.get(name, 0) + count
        family = event.split(".", 1)[0] or "unknown"
        by_family[family] = by_family.get(family, 0) + count
        cell = totals.setdefault(int(b), [0, 0])
        cell[0] += count
        if level in ("error", "critical") or family == "error":
            cell[1] += count
    buckets = []
    first, last = int(since // bucket), int((until - 1e-9) // bucket)
    for b in range(first, last + 1):
        count, errors = totals.get(b, (0, 0))
        buckets.append(
            {
                "start": format_time(b * bucket),
                "total": count,
                "errors": errors,
                "rate": errors / count if count else None,
            }
        )
    errors_total = sum(cell[1] for cell in totals.values())
    return {
        "since": format_time(since),
        "until": format_time(until),
        "total": total,
        "by_level": by_level,
        "by_component": dict(sorted(by_component.items(), key=lambda kv: -kv[1])),
        "by_event_family": dict(sorted(by_family.items(), key=lambda kv: -kv[1])),
        "error_rate": {
            "overall": errors_total / total if total else None,
            "errors": errors_total,
            "bucket_seconds": bucket,
            "buckets": buckets,
        },
    }
