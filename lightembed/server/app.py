"""The ASGI app of `lightembed serve` (Starlette): routes, API key, draining, metrics and error shapes.

Errors are JSON in the shape of the route's API: OpenAI's `{"error": {...}}` on /v1/* and /v2/*, TEI's
`{"error", "error_type"}` elsewhere; an unexpected failure is logged here and answered with a 500 that holds no
stack trace. Refused before a body is read: both Content-Length and Transfer-Encoding (400, connection closed),
a missing or wrong key or two Authorization headers (401), draining (503); by each JSON route: a Content-Type other
than application/json (415), a body slower than the body timeout (408). Each request's deadline (now + the
request timeout) is set for the batcher's admission (batcher.request_deadline).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from typing import Any, AsyncIterator, Awaitable, Callable, MutableMapping

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from lightembed.errors import NonFiniteOutput
from lightembed.server import protocol as p
from lightembed.server import timing
from lightembed.server.batcher import request_deadline
from lightembed.server.metrics import CONTENT_TYPE, Metrics
from lightembed.server.service import Served, Service, Settings

log = logging.getLogger("lightembed.server")

from lightembed.server.openapi import ROUTES as DOCUMENTED

OPEN_PATHS = ("/health",)
ROUTES = tuple(DOCUMENTED)


class State:
    """Whether the server is ready or draining, and how many requests it is answering."""

    def __init__(self) -> None:
        self.ready = False
        self.draining = False
        self.in_flight = 0
        self.fault: str | None = None  # set when a model gave non-finite output: /health is 503 from then on


def error_response(path: str, error: p.ApiError) -> JSONResponse:
    body = error.openai_body() if path.startswith(("/v1/", "/v2/")) else error.tei_body()
    return JSONResponse(body, status_code=error.status, headers=error.headers())


class Guard:
    """Pure ASGI middleware: API key, 503 while draining, in-flight count, request metrics, the Server-Timing
    header. (Pure ASGI, not
    BaseHTTPMiddleware, so handlers still see the client's disconnect on `receive`.)"""

    def __init__(self, app: Any, state: State, metrics: Metrics, api_key: str | None) -> None:
        self.app, self.state, self.metrics = app, state, metrics
        self.key = api_key.encode() if api_key else None

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        route = path if path in ROUTES else "other"
        start = time.perf_counter()
        status = {"code": 500}

        async def send_status(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message.setdefault("headers", []).append((b"server-timing", timing.header(scope, start)))
            await send(message)

        self.state.in_flight += 1
        self.metrics.in_flight.inc()
        try:
            refusal = self._refuse(path, scope)
            if refusal is not None:
                response = error_response(path, refusal)
                if isinstance(refusal, p.BadRequest):  # framing in doubt: nothing more is read on this connection
                    response.headers["Connection"] = "close"
                await response(scope, receive, send_status)
            else:
                await self.app(scope, receive, send_status)
        finally:
            self.state.in_flight -= 1
            self.metrics.in_flight.dec()
            self.metrics.requests.labels(route, str(status["code"])).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)

    def _refuse(self, path: str, scope: dict) -> p.ApiError | None:
        headers = [name for name, _ in scope.get("headers", ())]
        if b"transfer-encoding" in headers and b"content-length" in headers:
            # RFC 9112 6.1: a message with both is a smuggling attempt or a broken proxy; h11 would accept it.
            return p.BadRequest("The request has both Content-Length and Transfer-Encoding; send only one.")
        if self.state.draining and path != "/health":
            return p.Unavailable("The server is shutting down; send the request to another instance.")
        if self.key is None or path in OPEN_PATHS:
            return None
        given = [value for name, value in scope.get("headers", ()) if name == b"authorization"]
        if len(given) > 1:
            return p.Unauthorized(f"The request has {len(given)} Authorization headers; send exactly one.")
        scheme, _, token = (given[0] if given else b"").partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self.key):
            return p.Unauthorized("A valid API key is required: send the header `Authorization: Bearer <key>`.")
        return None


def check_content_type(request: Request) -> None:
    """415 unless the body is declared JSON (so a web page cannot post to a server without a key: a form or
    text/plain post is a "simple" cross-origin request, application/json is not)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        raise p.ApiError(
            415, f"The request's Content-Type is {media or 'missing'!r}; send the body as `application/json`.",
            "invalid_request_error",
        )


async def read_body(request: Request, limits: p.Limits, timeout: float | None = None) -> dict[str, Any]:
    """The JSON object body, read in chunks and refused (413) as soon as it passes the byte limit; 408 when it
    has not all arrived within `timeout` seconds (a stalled upload holds no connection forever)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise p.PayloadTooLarge(f"The request body is {declared} bytes; this server takes at most {limits.max_body_bytes}.")

    async def chunks() -> bytes:
        parts, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limits.max_body_bytes:
                raise p.PayloadTooLarge(f"The request body is over {limits.max_body_bytes} bytes, this server's limit.")
            parts.append(chunk)
        return b"".join(parts)

    try:
        raw = await asyncio.wait_for(chunks(), timeout)
    except asyncio.TimeoutError:
        raise p.ApiError(408, f"The request body did not arrive within {timeout:g} s.", "timeout") from None
    return p.read_json(raw, limits)


async def _client_gone(receive: Callable[[], Awaitable[MutableMapping[str, Any]]]) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


class ClientGone(Exception):
    """The client closed the connection before its answer was ready."""


async def answer(request: Request, work: Awaitable[Any], timeout: float) -> Any:
    """`work`'s result, unless the client leaves first (its queued inputs are dropped without inference) or
    `timeout` seconds pass (RequestTimeout)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_client_gone(request.receive))
    try:
        done, _ = await asyncio.wait({task, watcher}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()
    with contextlib.suppress(BaseException):
        await task
    if watcher in done:
        raise ClientGone()
    raise p.RequestTimeout(f"The request did not finish within this server's {timeout:g} s per-request timeout.")


def _queued_of(batcher: Any) -> Callable[[], float]:
    """What /metrics reads for a model's queue gauge."""
    return lambda: float(batcher.queued)


def build_app(served: list[Served], settings: Settings, *, api_key: str | None = None, metrics: Metrics | None = None,
              state: State | None = None) -> Any:
    """The ASGI app over loaded models. Batchers start and every model answers a warm-up request in the lifespan
    startup, so /health is 200 only after that."""
    metrics = metrics or Metrics()
    state = state or State()
    service = Service(served, settings, metrics.count_tokens)
    for s in served:
        metrics.queue.labels(s.name).set_function(_queued_of(s.batcher))

    def json_route(handler: Callable[[dict], Awaitable[Any]]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            path = request.url.path
            deadline = time.monotonic() + settings.request_timeout
            request_deadline.set((deadline, settings.request_timeout))
            timing.start(request.scope)
            try:
                if not state.ready:
                    raise p.Unavailable("The server is still loading its models.")
                check_content_type(request)
                began = time.perf_counter()
                body = await read_body(request, settings.limits, settings.body_timeout)
                timing.note("read", time.perf_counter() - began)
                result = await answer(request, handler(body), max(0.0, deadline - time.monotonic()))
                return JSONResponse(result)
            except (p.NonFinite, NonFiniteOutput) as exc:  # the graph's own check, or the answer's
                fault = exc if isinstance(exc, p.NonFinite) else p.NonFinite(None, str(exc))
                state.fault = fault.message
                log.error("%s", fault.message)
                return error_response(path, fault)
            except p.ApiError as exc:
                return error_response(path, exc)
            except (ClientGone, ClientDisconnect):  # the client left: nothing to answer, nothing to log
                return Response(status_code=499)
            except Exception:  # noqa: BLE001 - logged here; the client gets no stack trace
                log.exception("Unexpected failure answering %s", path)
                return error_response(path, p.ApiError(500, "Internal error while answering the request; see the server log.", "server_error"))

        return endpoint

    served_route = service.tei_root

    from lightembed import __version__
    from lightembed.server.openapi import docs_page, spec

    document = spec(__version__)

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    async def docs(request: Request) -> Response:
        return HTMLResponse(docs_page(document))

    async def health(request: Request) -> Response:
        if state.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        if not state.ready:
            return JSONResponse({"status": "loading"}, status_code=503)
        if state.fault is not None:
            return JSONResponse({"status": "unhealthy", "error": state.fault}, status_code=503)
        return JSONResponse({"status": "ok", "models": list(service.models)})

    async def models(request: Request) -> Response:
        return JSONResponse(service.openai_models())

    async def info(request: Request) -> Response:
        return JSONResponse(service.tei_info())

    async def metrics_route(request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    async def not_found(request: Request, exc: HTTPException) -> Response:
        path = request.url.path
        if exc.status_code == 404:
            error: p.ApiError = p.ApiError(404, f"No route {path}; routes: {', '.join(ROUTES)}.", "not_found")
        else:
            error = p.ApiError(exc.status_code, f"{request.method} {path}: {exc.detail}", "invalid_request_error")
        error.tei_type = "Validation"
        return error_response(path, error)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        faces = [face for s in served for face in (s, *s.faces)]  # each kind a model serves has its batcher
        for s in faces:
            s.batcher.start()
        for s in faces:
            await _warm_up(service, s)
        state.ready = True
        log.info("ready: %s", ", ".join(f"{s.name} ({s.kind})" for s in faces))
        try:
            yield
        finally:
            state.ready = False
            for s in faces:
                await s.batcher.close()

    routes = [
        Route("/v1/embeddings", json_route(service.openai_embeddings), methods=["POST"]),
        Route("/v1/rerank", json_route(service.cohere_rerank), methods=["POST"]),
        Route("/v2/rerank", json_route(service.cohere_rerank_v2), methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/embed", json_route(service.tei_embed), methods=["POST"]),
        Route("/rerank", json_route(service.tei_rerank), methods=["POST"]),
        Route("/embed_sparse", json_route(service.tei_embed_sparse), methods=["POST"]),
        Route("/embed_all", json_route(service.tei_embed_all), methods=["POST"]),
        Route("/similarity", json_route(service.tei_similarity), methods=["POST"]),
        Route("/predict", json_route(service.tei_predict), methods=["POST"]),
        Route("/tokenize", json_route(service.tei_tokenize), methods=["POST"]),
        Route("/decode", json_route(service.tei_decode), methods=["POST"]),
        Route("/v2/embed", json_route(service.cohere_embed), methods=["POST"]),
        Route("/v1/multi-vector", json_route(service.jina_multi_vector), methods=["POST"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
        Route("/", json_route(served_route), methods=["POST"]),
        Route("/info", info, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics_route, methods=["GET"]),
    ]
    handlers: dict[Any, Any] = {HTTPException: not_found}
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=handlers)
    app.state.lightembed = state
    return Guard(app, state, metrics, api_key)


async def _warm_up(service: Service, s: Served) -> None:
    """Requests through the model's batcher, as a client's would go: one short input, then a few long ones, so
    the drain rate admission works with is measured on batches of a real size before the first client."""
    body = {"model": s.name}
    limits = service.settings.limits
    long_text = ("warm-up " * 48)[: limits.max_chars].strip() or "w"
    for texts in (["warm-up"], [long_text] * min(8, limits.max_inputs)):
        if s.kind == "embed":
            await service.tei_embed({**body, "inputs": texts})
        elif s.kind == "sparse":
            await service.tei_embed_sparse({**body, "inputs": texts})
        elif s.kind == "multi_vector":
            await service.jina_multi_vector({**body, "input": texts})
        elif s.reranker.num_labels == 1:
            await service.tei_rerank({**body, "query": "warm-up", "texts": texts})
        else:
            await service.tei_predict({**body, "inputs": texts})
