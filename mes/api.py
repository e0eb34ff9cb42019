"""The MES HTTP API (FastAPI, OpenAPI at /api/v1/openapi.json): orders, imports and B2MML export, stops
and reasons, KPIs, lots and trace, maintenance requests, audit; served by uvicorn as a runner service.

Every write needs a bearer token (tokens from an env var or a file, kept only as SHA-256 hashes).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.middleware.base import BaseHTTPMiddleware

from mes import kpi, reports
from mes.maintenance import MaintenanceRequest
from mes.order_spec import OrderSpec, OrderStatus
from mes.repository import Conflict, NotFound, Repository
from shopfloor.config.mes import ApiConfig

log = logging.getLogger("shopfloor.mes.api")
NS = 1_000_000_000
PREFIX = "/api/v1"


class TokenError(ValueError):
    """The API token configuration cannot be read."""


class Tokens:
    """API tokens by name, held as SHA-256 digests; a file may hold ``name:sha256:HEX`` lines only."""

    def __init__(self, digests: dict[str, bytes]) -> None:
        self.digests = digests

    @classmethod
    def from_config(cls, api: ApiConfig) -> Tokens:
        digests: dict[str, bytes] = {}
        sources: list[tuple[str, str]] = []
        if api.tokens_env and os.environ.get(api.tokens_env):
            sources += [(f"env {api.tokens_env}", p) for p in os.environ[api.tokens_env].split(",")]
        if api.tokens_file:
            try:
                text = Path(api.tokens_file).read_text(encoding="utf-8")
            except OSError as exc:
                raise TokenError(
                    f"mes.api.tokens_file: cannot read {api.tokens_file}: {exc.strerror}"
                ) from exc
            sources += [
                (f"{api.tokens_file}", ln)
                for ln in text.splitlines()
                if ln.strip() and not ln.startswith("#")
            ]
        for where, item in sources:
            name, sep, rest = item.strip().partition(":")
            if not sep or not name or not rest:
                raise TokenError(f"{where}: expected 'name:token' or 'name:sha256:HEX' entries")
            if rest.startswith("sha256:"):
                try:
                    digests[name] = bytes.fromhex(rest[7:])
                except ValueError as exc:
                    raise TokenError(f"{where}: token {name!r}: sha256 digest is not hex") from exc
            else:
                if len(rest) < 16:
                    raise TokenError(f"{where}: token {name!r} is shorter than 16 characters")
                digests[name] = hashlib.sha256(rest.encode()).digest()
        return cls(digests)

    def who(self, token: str) -> str | None:
        d = hashlib.sha256(token.encode()).digest()
        for name, ref in self.digests.items():
            if hmac.compare_digest(d, ref):
                return name
        return None


class _BodyLimit(BaseHTTPMiddleware):
    def __init__(self, app: Any, max_bytes: int) -> None:
        super().__init__(app)
        self.max_bytes = max_bytes

    async def dispatch(self, request: Request, call_next: Any) -> Response:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return JSONResponse({"detail": f"request body over {self.max_bytes} bytes"}, status_code=413)
        if request.method in ("POST", "PUT", "PATCH") and length is None:
            body = b""
            async for chunk in request.stream():
                body += chunk
                if len(body) > self.max_bytes:
                    return JSONResponse(
                        {"detail": f"request body over {self.max_bytes} bytes"}, status_code=413
                    )
            request._body = body  # starlette reads the cached body from here
        return await call_next(request)


Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0)]


class Transition(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: OrderStatus


class OrderEdit(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int | None = Field(None, description="The version you read; refused (409) if it moved on.")
    quantity: Annotated[float, Field(gt=0, le=1e12)] | None = None
    priority: Annotated[int, Field(ge=-1000, le=1000)] | None = None
    description: Annotated[str, Field(max_length=500)] | None = None
    product: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    planned_start: datetime | None = None
    planned_end: datetime | None = None


class ReasonAssign(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=64)


class StopSplit(BaseModel):
    model_config = ConfigDict(extra="forbid")
    at: datetime
    reason: str | None = Field(None, min_length=1, max_length=64)


RequestStatus = Literal["open", "acknowledged", "closed"]  # mes.maintenance.STATUSES
Hours = Annotated[float, Field(allow_inf_nan=False, description="null: no estimate")]


class MaintenanceOpen(BaseModel):
    """A maintenance request as the analytics open it; ``key`` makes it idempotent (one per alert episode)."""

    model_config = ConfigDict(extra="forbid")
    key: str = Field(
        min_length=1,
        max_length=255,
        examples=["pdm:equipment:acme/line-1/pump-3:bearing:1800000000000000000"],
    )
    asset: str = Field(min_length=1, max_length=255)
    kind: Literal["equipment", "sensor_fault"]
    subject: str = Field(
        min_length=1, max_length=128, description="the failure mode, or the signal of a sensor fault"
    )
    opened_ns: int = Field(ge=0, description="when the alert was raised (source time, UTC ns)")
    rul_hours: Hours | None = None
    rul_low_hours: Hours | None = None
    rul_high_hours: Hours | None = None
    score: Annotated[float, Field(allow_inf_nan=False)] | None = None
    evidence: list[Annotated[str, Field(max_length=255)]] = Field(default_factory=list, max_length=100)
    detail: str = Field("", max_length=4000)


class RequestNote(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str = Field("", max_length=4000)


def _ns(dt: datetime) -> int:
    if dt.tzinfo is None:
        raise HTTPException(422, "times need a time zone (e.g. 2026-12-01T08:00:00+08:00 or ...Z)")
    return int(dt.timestamp() * 1_000_000) * 1000


def create_app(
    repo: Repository, tokens: Tokens, timezone: str = "UTC", max_body_bytes: int = 2 << 20
) -> FastAPI:
    app = FastAPI(
        title="Shopfloor MES",
        version="1",
        openapi_url=f"{PREFIX}/openapi.json",
        docs_url=f"{PREFIX}/docs",
        redoc_url=None,
    )
    app.add_middleware(_BodyLimit, max_bytes=max_body_bytes)
    bearer = HTTPBearer(auto_error=False)

    def writer(creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> str:  # noqa: B008
        who = tokens.who(creds.credentials) if creds is not None else None
        if who is None:
            raise HTTPException(
                401, "a valid bearer token is required to change anything", {"WWW-Authenticate": "Bearer"}
            )
        return who

    need_token = Depends(writer)  # a default, not Annotated: FastAPI must see it at import time

    @app.exception_handler(NotFound)
    async def _nf(_r: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc).strip("'\"")}, status_code=404)

    @app.exception_handler(Conflict)
    async def _cf(_r: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    async def run(fn: Any, *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    def page(p: Any) -> dict[str, Any]:
        return {"items": p.items, "total": p.total, "limit": p.limit, "offset": p.offset}

    @app.get(f"{PREFIX}/equipment")
    async def equipment() -> list[dict[str, Any]]:
        return await run(repo.equipment)

    @app.get(f"{PREFIX}/reasons")
    async def reasons() -> list[dict[str, Any]]:
        return [
            {
                "id": r.id,
                "en": r.en,
                "zh": r.zh,
                "parent": r.parent,
                "loss": repo.cfg.reason_loss(r.id).value,
                "codes": r.codes,
            }
            for r in repo.cfg.reasons
        ]

    @app.get(f"{PREFIX}/orders")
    async def list_orders(
        status: OrderStatus | None = None, asset: str | None = None, limit: Limit = 100, offset: Offset = 0
    ) -> dict[str, Any]:
        return page(await run(repo.orders, status.value if status else None, asset, limit, offset))

    @app.post(f"{PREFIX}/orders", status_code=201)
    async def create_order(spec: OrderSpec, release: bool = False, who: str = need_token) -> dict[str, Any]:
        status = OrderStatus.RELEASED if release else OrderStatus.PLANNED
        return await run(repo.create_order, spec, who, status)

    @app.post(f"{PREFIX}/orders/import", status_code=201)
    async def import_orders(request: Request, release: bool = False, who: str = need_token) -> dict[str, Any]:
        from mes import b2mml, order_csv

        body = await request.body()
        kind = request.headers.get("content-type", "").split(";")[0].strip()
        known = await run(repo.known_assets)
        try:
            if kind in ("application/xml", "text/xml"):
                specs = b2mml.parse_production_schedule(body, known_assets=known, max_bytes=max_body_bytes)
            elif kind == "text/csv":
                specs = order_csv.parse_orders_csv(body, known_assets=known, max_bytes=max_body_bytes)
            else:
                raise HTTPException(415, "send B2MML as application/xml or orders as text/csv")
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        status = OrderStatus.RELEASED if release else OrderStatus.PLANNED
        rows = await run(repo.create_orders, specs, who, status)
        return {"created": len(rows), "ids": [r["id"] for r in rows]}

    @app.get(f"{PREFIX}/orders/performance.xml", response_class=Response)
    async def performance_xml(ids: Annotated[list[str] | None, Query()] = None) -> Response:
        from mes import b2mml

        perf = await run(repo.performance, ids)
        return Response(b2mml.production_performance(perf), media_type="application/xml")

    @app.get(f"{PREFIX}/orders/{{order_id}}")
    async def get_order(order_id: str) -> dict[str, Any]:
        return await run(repo.order, order_id)

    @app.post(f"{PREFIX}/orders/{{order_id}}/transition")
    async def transition(order_id: str, body: Transition, who: str = need_token) -> dict[str, Any]:
        return await run(repo.transition, order_id, body.to, who)

    @app.patch(f"{PREFIX}/orders/{{order_id}}")
    async def edit(order_id: str, body: OrderEdit, who: str = need_token) -> dict[str, Any]:
        changes: dict[str, Any] = {}
        for k in ("quantity", "priority", "description", "product"):
            v = getattr(body, k)
            if v is not None:
                changes[k] = v
        for k in ("planned_start", "planned_end"):
            v = getattr(body, k)
            if v is not None:
                changes[f"{k}_ns"] = _ns(v)
        if not changes:
            raise HTTPException(422, "nothing to change")
        return await run(repo.edit_order, order_id, changes, who, body.version)

    @app.get(f"{PREFIX}/stops")
    async def stops(
        asset: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        include_runs: bool = False,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> dict[str, Any]:
        s, e = (_ns(start) if start else None), (_ns(end) if end else None)
        if s is not None and e is not None and e <= s:
            raise HTTPException(422, "end must be after start")
        return page(await run(repo.intervals, asset, s, e, not include_runs, limit, offset))

    @app.post(f"{PREFIX}/stops/{{stop_id}}/reason")
    async def assign(stop_id: int, body: ReasonAssign, who: str = need_token) -> dict[str, Any]:
        return await run(repo.assign_reason, stop_id, body.reason, who)

    @app.post(f"{PREFIX}/stops/{{stop_id}}/split")
    async def split(stop_id: int, body: StopSplit, who: str = need_token) -> dict[str, Any]:
        a, b = await run(repo.split_stop, stop_id, _ns(body.at), who, body.reason)
        return {"first": a, "second": b}

    async def window_figures(asset: str, s: int, e: int) -> tuple[list[str], kpi.Kpis]:
        return await run(reports.window_kpis, repo, asset, s, e, timezone)

    async def window_kpis(asset: str, s: int, e: int) -> dict[str, Any]:
        assets, k = await window_figures(asset, s, e)
        return {
            "asset": asset,
            "assets": assets,
            "start_ns": s,
            "end_ns": e,
            **k.as_dict(),
            "waterfall": k.waterfall(),
        }

    @app.get(f"{PREFIX}/kpi")
    async def kpis(asset: str, start: datetime, end: datetime) -> dict[str, Any]:
        s, e = _ns(start), _ns(end)
        if e <= s:
            raise HTTPException(422, "end must be after start")
        if e - s > 400 * 86400 * NS:
            raise HTTPException(422, "windows are at most 400 days")
        return await window_kpis(asset, s, e)

    @app.get(f"{PREFIX}/kpi/shifts")
    async def shift_kpis(asset: str, start: datetime, end: datetime) -> dict[str, Any]:
        """One KPI set per shift instance of the calendar in [start, end) (each day's shifts, named)."""
        s, e = _ns(start), _ns(end)
        if e <= s:
            raise HTTPException(422, "end must be after start")
        if e - s > 93 * 86400 * NS:
            raise HTTPException(422, "shift reports cover at most 93 days")
        if not repo.cfg.shifts:
            raise HTTPException(409, "no shifts are configured (mes.shifts)")
        assets, shifts = await run(reports.shift_kpis, repo, asset, s, e, timezone)
        return {
            "asset": asset,
            "assets": assets,
            "shifts": [{"shift": n, **k.as_dict()} for n, _s, _e, k in shifts],
        }

    @app.get(f"{PREFIX}/kpi/products/{{product}}")
    async def product_kpis(product: str, start: datetime, end: datetime) -> dict[str, Any]:
        """The KPIs of a product: the time each of its orders ran inside [start, end), on its asset,
        taken together (seconds and counts add up; ratios from the sums)."""
        s, e = _ns(start), _ns(end)
        if e <= s:
            raise HTTPException(422, "end must be after start")
        orders = [o for o in (await run(repo.orders_of_product, product)) if o["actual_start_ns"] is not None]
        parts: list[kpi.Kpis] = []
        used: list[str] = []
        for o in orders:
            stop = (
                o["actual_end_ns"]
                if o["actual_end_ns"] is not None
                else await run(repo.newest_ns, o["asset"])
            )
            a, b = max(s, o["actual_start_ns"]), min(e, stop or 0)
            if b > a:
                parts.append((await window_figures(o["asset"], a, b))[1])
                used.append(o["id"])
        if not parts:
            raise NotFound(
                f"no order of product {product} ran between {start.isoformat()} and {end.isoformat()}"
            )
        k = kpi.Kpis.combine(parts)
        return {"product": product, "orders": used, **k.as_dict(), "waterfall": k.waterfall()}

    @app.get(f"{PREFIX}/orders/{{order_id}}/kpi")
    async def order_kpis(order_id: str) -> dict[str, Any]:
        """The KPIs of an order's asset over the time it ran (as far as the data goes, while running)."""
        o = await run(repo.order, order_id)
        if o["actual_start_ns"] is None:
            raise HTTPException(409, f"order {order_id} has not started")
        end = o["actual_end_ns"] if o["actual_end_ns"] is not None else await run(repo.newest_ns, o["asset"])
        if end is None or end <= o["actual_start_ns"]:
            raise HTTPException(409, f"order {order_id} has no production data yet")
        return {"order": order_id, **(await window_kpis(o["asset"], o["actual_start_ns"], end))}

    @app.get(f"{PREFIX}/lots/{{lot_id:path}}/trace")
    async def trace(
        lot_id: str, direction: str = Query("backward", pattern="^(forward|backward)$")
    ) -> dict[str, Any]:
        from mes import lots

        def go() -> Any:
            with repo.engine.connect() as conn:
                return lots.trace(conn, lot_id, direction)  # type: ignore[arg-type]

        try:
            tr = await run(go)
        except LookupError as exc:
            raise HTTPException(404, f"no lot {lot_id}") from exc
        return tr.as_dict()

    @app.get(f"{PREFIX}/maintenance/requests")
    async def list_requests(
        status: RequestStatus | None = None,
        asset: str | None = None,
        limit: Limit = 100,
        cursor: Annotated[int | None, Query(ge=1, description="next_cursor of the previous page")] = None,
    ) -> dict[str, Any]:
        """Maintenance requests, newest first; ``asset`` may be a line. Page on with ``next_cursor``."""
        p = await run(repo.requests, status, asset, limit, cursor)
        more = p.total > len(p.items)
        return {
            "items": p.items,
            "total": p.total,
            "limit": p.limit,
            "next_cursor": p.items[-1]["id"] if more and p.items else None,
        }

    @app.post(f"{PREFIX}/maintenance/requests", status_code=201)
    async def open_request(
        body: MaintenanceOpen, response: Response, who: str = need_token
    ) -> dict[str, Any]:
        """Open a request (201), or return the one already opened with this key (200)."""
        req = MaintenanceRequest(**{**body.model_dump(), "evidence": tuple(body.evidence)})
        rid, created = await run(repo.open_request, req, who)
        if not created:
            response.status_code = 200
        return await run(repo.request, rid)

    @app.get(f"{PREFIX}/maintenance/requests/{{request_id}}")
    async def get_request(request_id: int) -> dict[str, Any]:
        return await run(repo.request, request_id)

    @app.post(f"{PREFIX}/maintenance/requests/{{request_id}}/acknowledge")
    async def acknowledge_request(
        request_id: int, body: RequestNote | None = None, who: str = need_token
    ) -> dict[str, Any]:
        return await run(repo.acknowledge_request, request_id, who, body.note if body else "")

    @app.post(f"{PREFIX}/maintenance/requests/{{request_id}}/close")
    async def close_request(
        request_id: int, body: RequestNote | None = None, who: str = need_token
    ) -> dict[str, Any]:
        return await run(repo.close_request, request_id, who, body.note if body else "")

    @app.get(f"{PREFIX}/audit")
    async def audit(
        entity: str | None = None, entity_id: str | None = None, limit: Limit = 100, offset: Offset = 0
    ) -> dict[str, Any]:
        return page(await run(repo.audit, entity, entity_id, limit, offset))

    return app


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: the service runner owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield


class ApiService:
    """uvicorn serving the API on the runner; bound to 127.0.0.1 unless configured otherwise."""

    name = "mes-api"

    def __init__(self, app: FastAPI, api: ApiConfig) -> None:
        self.api = api
        self.server = _Server(
            uvicorn.Config(
                app, host=api.host, port=api.port, log_level="warning", access_log=False, lifespan="off"
            )
        )
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        for s in self.server.servers:
            for sock in s.sockets:
                return int(sock.getsockname()[1])
        return self.api.port

    async def start(self) -> None:
        self._task = asyncio.create_task(self.server.serve(), name="mes-api")
        for _ in range(200):
            if self.server.started:
                log.info(
                    "MES API on http://%s:%d%s (OpenAPI at %s/openapi.json)",
                    self.api.host,
                    self.port,
                    PREFIX,
                    PREFIX,
                )
                return
            if self._task.done():
                self._task.result()
                raise RuntimeError(f"MES API could not listen on {self.api.host}:{self.api.port}")
            await asyncio.sleep(0.05)
        raise RuntimeError("MES API did not start within 10 s")

    async def stop(self) -> None:
        self.server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 10)

    def status(self) -> str | None:
        return None
