"""The alerts API of SPEC §6, mounted under ``/api/v1/admin/chat`` with admin auth.

Bodies are pydantic models (so the OpenAPI schema describes them); the rules themselves
are checked by ``build_rule``, so a bad field is a 400 whose ``detail`` names it, whether
the body came from the API or the config file. Every status a route can answer is
declared, 401/403 included (they come from the admin dependency of the mount).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from chatwatch.alerts.engine import AlertConflict, AlertEngine, AlertNotFound
from chatwatch.alerts.rules import NAME_PATTERN, AlertType, RuleError, Severity, validate_labels
from chatwatch.alerts.state import AlertState
from chatwatch.alerts.store import OutboxState
from chatwatch.api.audit import AuditAction, audit
from chatwatch.api.deps import require_admin
from chatwatch.api.schemas import integer_or_empty
from chatwatch.auth import Principal

__all__ = ["ALERT_RESPONSES", "build_admin_alerts_router"]

SeverityName = Literal["low", "medium", "high", "critical"]
TypeName = Literal["error", "performance", "security", "connection", "ai", "system"]
MAX_PAGE = 1000
# The caller (the mount already requires an admin; FastAPI runs the dependency once).
Admin = Annotated[Principal, Depends(require_admin)]


# Label names as the rules take them (the engine's own check also refuses reserved names).
LABELS_SCHEMA: dict[str, Any] = {
    "propertyNames": {"pattern": "^[A-Za-z][A-Za-z0-9_]{0,63}$"},
    "maxProperties": 20,
}


def _enum_or_empty(*values: str) -> dict[str, Any]:
    """A query parameter that takes one of ``values``; empty counts as absent."""
    return {"anyOf": [{"type": "string", "enum": list(values)}, {"const": ""}]}


def _pattern_or_empty(pattern: str) -> dict[str, Any]:
    return {"anyOf": [{"type": "string", "pattern": pattern}, {"const": ""}]}


_LIMIT = integer_or_empty(1, MAX_PAGE, "page size (default 100)")


class ErrorOut(BaseModel):
    """Why a request was refused."""

    detail: str


ALERT_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "A bad parameter or body field (named)"},
    401: {"model": ErrorOut, "description": "No or bad credentials"},
    403: {"model": ErrorOut, "description": "Not an admin"},
}
_404: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "No such alert, rule or silence"}
}
_409: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorOut, "description": "Conflicts with the current state"}
}


class AlertOut(BaseModel):
    """One alert."""

    id: str
    fingerprint: str
    state: Literal["pending", "firing", "resolved"]
    rule: str | None
    manual: bool
    labels: dict[str, str]
    annotations: dict[str, str]
    value: float | None
    starts_at: str
    fired_at: str | None
    ends_at: str | None
    acknowledged: bool
    acknowledged_at: str | None
    acknowledged_by: str | None
    silenced: bool
    notified: Literal["none", "firing", "resolved"]
    escalated_at: str | None
    url: str


class AlertsOut(BaseModel):
    """Pending and firing alerts, and their counts by severity."""

    active: list[AlertOut]
    counts: dict[str, int]


class HistoryOut(BaseModel):
    """A page of alerts, newest first."""

    items: list[AlertOut]
    next_cursor: str | None


class ManualAlertIn(BaseModel):
    """A manual alert."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    severity: SeverityName = "medium"
    type: TypeName = "system"
    summary: str = Field("", max_length=1024)
    labels: dict[str, str] = Field(default_factory=dict, json_schema_extra=LABELS_SCHEMA)


class RuleIn(BaseModel):
    """A rule as the API takes it (see SPEC §6)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str | None = Field(None, description="required for POST; the path's for PUT")
    signal: str
    op: Literal[">", ">=", "<", "<="]
    threshold: float
    for_: str | float | None = Field(None, alias="for")
    severity: SeverityName = "medium"
    type: TypeName = "system"
    summary: str = ""
    labels: dict[str, str] = Field(default_factory=dict, json_schema_extra=LABELS_SCHEMA)
    cooldown: str | float | None = None
    channels: list[str] | None = None
    enabled: bool = True
    by: list[str] = Field(default_factory=list)
    resolve_threshold: float | None = None
    min_samples: int = 0
    escalate_after: str | float | None = None
    escalate_to: list[str] | None = None


class RuleOut(BaseModel):
    """A rule and where it comes from."""

    model_config = ConfigDict(populate_by_name=True)

    name: str
    signal: str
    op: str
    threshold: float
    for_: str = Field(alias="for")
    severity: str
    type: str
    summary: str
    labels: dict[str, str]
    cooldown: str
    channels: list[str] | None
    enabled: bool
    by: list[str]
    resolve_threshold: float | None
    min_samples: int
    escalate_after: str | None
    escalate_to: list[str] | None
    source: Literal["default", "config", "api"]
    read_only: bool
    kind: Literal["threshold", "slo"] = "threshold"
    objective: float | None = Field(None, description="kind slo: the good fraction")
    window: str | None = Field(None, description="kind slo: the objective's period")


class RulesOut(BaseModel):
    """Every rule."""

    items: list[RuleOut]


class MatcherIn(BaseModel):
    """One label matcher."""

    model_config = ConfigDict(extra="forbid")

    name: str
    value: str
    is_regex: bool = False


class SilenceIn(BaseModel):
    """A silence: notifications of alerts whose labels all match are held back."""

    model_config = ConfigDict(extra="forbid")

    matchers: list[MatcherIn] = Field(min_length=1)
    ends_at: str | float
    starts_at: str | float | None = None
    comment: str = ""


class SilenceOut(BaseModel):
    """A stored silence."""

    id: str
    matchers: list[MatcherIn]
    starts_at: str
    ends_at: str
    comment: str
    created_by: str | None
    created_at: str
    state: Literal["active", "pending", "expired"]


class SilencesOut(BaseModel):
    """Every silence, newest first."""

    items: list[SilenceOut]


class NotificationOut(BaseModel):
    """One stored notification and how its delivery went."""

    id: str
    channel: str
    kind: str
    group_key: str
    state: Literal["queued", "sending", "sent", "failed"]
    attempts: int
    last_error: str | None
    alert_ids: list[str]
    created_at: str
    updated_at: str
    next_attempt_at: str | None
    sent_at: str | None


class NotificationsOut(BaseModel):
    """A page of notifications, newest first."""

    items: list[NotificationOut]
    next_cursor: str | None


def _bad(detail: str) -> HTTPException:
    return HTTPException(status_code=400, detail=detail)


def _limit(raw: str | None, default: int = 100) -> int:
    if raw is None:
        return default
    try:
        n = int(raw.strip())
    except ValueError:
        raise _bad(f"limit: {raw[:32]!r} is not an integer") from None
    if not 1 <= n <= MAX_PAGE:
        raise _bad(f"limit: must be between 1 and {MAX_PAGE}")
    return n


def build_admin_alerts_router(engine: AlertEngine) -> APIRouter:
    """The alert routes over ``engine`` (auth is the mount's job)."""
    router = APIRouter(prefix="/alerts", tags=["admin alerts"], responses=ALERT_RESPONSES)

    def out(alert: Any) -> AlertOut:
        return AlertOut(**engine.to_json(alert))

    @router.get("")
    async def list_active() -> AlertsOut:
        """Pending and firing alerts, newest first, with counts by severity."""
        return AlertsOut(active=[out(a) for a in engine.active()], counts=engine.counts())

    @router.post(
        "",
        status_code=201,
        responses={200: {"model": AlertOut, "description": "The same alert is active already"}},
    )
    async def raise_alert(
        body: ManualAlertIn, principal: Admin, response: Response, request: Request
    ) -> AlertOut:
        """Raise a manual alert (firing at once; resolve it with ``/{id}/resolve``)."""
        try:
            labels = validate_labels(body.labels)
        except RuleError as err:
            raise _bad(str(err)) from None
        alert, created = await engine.raise_manual(
            body.name,
            Severity(body.severity),
            AlertType(body.type),
            body.summary,
            labels,
            principal.user_id,
        )
        if not created:
            response.status_code = 200
        else:
            audit(request, AuditAction.ALERT_RAISED, alert_id=alert.id, alert_name=body.name)
        return out(alert)

    @router.get("/history")
    async def history(
        limit: Annotated[str | None, Query(json_schema_extra=_LIMIT)] = None,
        cursor: Annotated[
            str | None, Query(json_schema_extra=_pattern_or_empty("^[0-9]{1,18}$"))
        ] = None,
        state: Annotated[
            str | None,
            Query(json_schema_extra=_enum_or_empty("pending", "firing", "resolved")),
        ] = None,
    ) -> HistoryOut:
        """Every stored alert (pending, firing, resolved), newest first, page by page."""
        # Empty parameters count as absent, as on every admin endpoint.
        limit, cursor, state = limit or None, cursor or None, state or None
        n = _limit(limit)
        before = None
        if cursor is not None:
            # At most 18 ASCII digits: any larger number would overflow the database's integer.
            if not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 18):
                raise _bad("cursor: not a cursor from a previous page")
            before = int(cursor)
        if state is not None and state not in {
            s.value for s in AlertState if s is not AlertState.INACTIVE
        }:
            raise _bad("state: must be pending, firing or resolved")
        items, next_seq = await engine.store.history(n, before, state)
        return HistoryOut(
            items=[out(engine.held(a)) for a in items],
            next_cursor=None if next_seq is None else str(next_seq),
        )

    @router.get("/rules")
    async def list_rules() -> RulesOut:
        """Every rule: defaults and config (read-only) first, then the API's."""
        return RulesOut(items=[RuleOut(**r.to_json()) for r in engine.rules()])

    @router.post("/rules", status_code=201, responses={**_409})
    async def create_rule(body: RuleIn, request: Request) -> RuleOut:
        """Store a new rule (a bad field is a 400 naming it; a taken name a 409)."""
        try:
            rule = await engine.create_rule(body.model_dump(by_alias=True, exclude_unset=True))
        except RuleError as err:
            raise _bad(str(err)) from None
        except AlertConflict as err:
            raise HTTPException(status_code=409, detail=str(err)) from None
        audit(request, AuditAction.RULE_CREATED, rule=rule.name)
        return RuleOut(**rule.to_json())

    @router.get("/rules/{name}", responses={**_404})
    async def get_rule(name: str) -> RuleOut:
        """One rule."""
        try:
            return RuleOut(**engine.rule(name).to_json())
        except AlertNotFound as err:
            raise HTTPException(status_code=404, detail=str(err)) from None

    @router.put("/rules/{name}", responses={**_404, **_409})
    async def replace_rule(name: str, body: RuleIn, request: Request) -> RuleOut:
        """Replace an API rule (config rules are read-only: 409)."""
        try:
            rule = await engine.replace_rule(
                name, body.model_dump(by_alias=True, exclude_unset=True)
            )
        except RuleError as err:
            raise _bad(str(err)) from None
        except AlertConflict as err:
            raise HTTPException(status_code=409, detail=str(err)) from None
        except AlertNotFound as err:
            raise HTTPException(status_code=404, detail=str(err)) from None
        audit(request, AuditAction.RULE_UPDATED, rule=rule.name)
        return RuleOut(**rule.to_json())

    @router.delete("/rules/{name}", status_code=204, responses={**_404, **_409})
    async def delete_rule(name: str, request: Request) -> Response:
        """Delete an API rule and resolve its alerts (config rules are read-only: 409)."""
        try:
            await engine.delete_rule(name)
        except AlertConflict as err:
            raise HTTPException(status_code=409, detail=str(err)) from None
        except AlertNotFound as err:
            raise HTTPException(status_code=404, detail=str(err)) from None
        audit(request, AuditAction.RULE_DELETED, rule=name)
        return Response(status_code=204)

    @router.get("/silences")
    async def list_silences() -> SilencesOut:
        """Every silence (active, pending and expired), newest first."""
        now = engine.clock.time()
        return SilencesOut(items=[SilenceOut(**s.to_json(now)) for s in engine.silences()])

    @router.post("/silences", status_code=201)
    async def create_silence(body: SilenceIn, principal: Admin, request: Request) -> SilenceOut:
        """Hold back notifications of alerts whose labels all match, until ``ends_at``."""
        try:
            silence = await engine.add_silence(
                body.model_dump(exclude_unset=True), principal.user_id
            )
        except RuleError as err:
            raise _bad(str(err)) from None
        audit(request, AuditAction.SILENCE_CREATED, silence_id=silence.id)
        return SilenceOut(**silence.to_json(engine.clock.time()))

    @router.delete("/silences/{silence_id}", status_code=204, responses={**_404})
    async def end_silence(silence_id: str, request: Request) -> Response:
        """End a silence now."""
        try:
            await engine.end_silence(silence_id)
        except AlertNotFound as err:
            raise HTTPException(status_code=404, detail=str(err)) from None
        audit(request, AuditAction.SILENCE_DELETED, silence_id=silence_id)
        return Response(status_code=204)

    @router.get("/notifications")
    async def notifications(
        state: Annotated[
            str | None,
            Query(json_schema_extra=_enum_or_empty("queued", "sending", "sent", "failed")),
        ] = None,
        limit: Annotated[str | None, Query(json_schema_extra=_LIMIT)] = None,
        cursor: Annotated[
            str | None, Query(json_schema_extra=_pattern_or_empty("^[A-Za-z0-9]{1,64}$"))
        ] = None,
    ) -> NotificationsOut:
        """Stored notifications newest first (``state=failed``: deliveries given up)."""
        state, limit, cursor = state or None, limit or None, cursor or None
        n = _limit(limit)
        states = {OutboxState.QUEUED, OutboxState.SENDING, OutboxState.SENT, OutboxState.FAILED}
        if state is not None and state not in states:
            raise _bad("state: must be queued, sending, sent or failed")
        if cursor is not None and (len(cursor) > 64 or not cursor.isalnum()):
            raise _bad("cursor: not a cursor from a previous page")
        rows, next_cursor = await engine.store.notifications(n, state=state, before=cursor)
        return NotificationsOut(
            items=[NotificationOut(**r.to_json()) for r in rows], next_cursor=next_cursor
        )

    @router.get("/{alert_id}", responses={**_404})
    async def get_alert(alert_id: str) -> AlertOut:
        """One alert, active or from history."""
        try:
            return out(await engine.get(alert_id))
        except AlertNotFound as err:
            raise HTTPException(status_code=404, detail=str(err)) from None

    @router.post("/{alert_id}/acknowledge", responses={**_404, **_409})
    async def acknowledge(alert_id: str, principal: Admin, request: Request) -> AlertOut:
        """Acknowledge an active alert (it still resolves by itself; stops escalation)."""
        try:
            acknowledged = out(await engine.acknowledge(alert_id, principal.user_id))
            audit(request, AuditAction.ALERT_ACKNOWLEDGED, alert_id=alert_id)
            return acknowledged
        except AlertNotFound as err:
            raise HTTPException(status_code=404, detail=str(err)) from None
        except AlertConflict as err:
            raise HTTPException(status_code=409, detail=str(err)) from None

    @router.post("/{alert_id}/resolve", responses={**_404, **_409})
    async def resolve(alert_id: str, principal: Admin, request: Request) -> AlertOut:
        """Resolve an active alert by hand (notified as resolved if it was notified firing)."""
        try:
            resolved = out(await engine.resolve(alert_id, principal.user_id))
            audit(request, AuditAction.ALERT_RESOLVED, alert_id=alert_id)
            return resolved
        except AlertNotFound as err:
            raise HTTPException(status_code=404, detail=str(err)) from None
        except AlertConflict as err:
            raise HTTPException(status_code=409, detail=str(err)) from None

    return router
