"""`lightembed serve MODEL[=NAME] [MODEL ...]`: flags (each also an environment variable), loading, and uvicorn
with a drain on SIGTERM: new requests get 503, those in flight finish, then the process exits 0 (within
--drain-timeout seconds plus about one second for uvicorn to close)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Sequence

from lightembed.errors import LightembedValueError
from lightembed.server import SERVER_EXTRA_MISSING

ENV_PREFIX = "LIGHTEMBED_"
# Padded tokens per gathered batch on CPU. On the 2-core test machine 256 served MiniLM 1.5-1.7x faster than the
# runtime's 2048 in each of 3 interleaved rounds, with ~80 MiB less peak RSS (benchmarks/RESULTS.md, "Server").
CPU_BATCH_TOKENS = 256


def _env(name: str, default: Any) -> Any:
    return os.environ.get(ENV_PREFIX + name.upper().replace("-", "_"), default)


def _env_flag(name: str) -> bool:
    return str(_env(name, "")).strip().lower() in ("1", "true", "yes", "on")


def parser() -> argparse.ArgumentParser:
    """The flags of `lightembed serve`; every flag's default comes from LIGHTEMBED_<FLAG> when that is set."""
    ap = argparse.ArgumentParser(
        prog="lightembed serve",
        description="Serve embedding, reranking and sparse models over HTTP (OpenAI, TEI and Cohere/Jina routes). "
        "Every flag can be set by an environment variable LIGHTEMBED_<FLAG>, e.g. LIGHTEMBED_PORT=9000, "
        "LIGHTEMBED_API_KEY=...; LIGHTEMBED_MODELS holds the models, separated by spaces.",
    )
    ap.add_argument("models", nargs="*", metavar="MODEL[=NAME]",
                    help="model folder or Hub id, optionally with the name it is served under (default: last path part)")
    ap.add_argument("--host", default=_env("host", "127.0.0.1"))
    ap.add_argument("--port", type=int, default=_env("port", 8080))
    ap.add_argument("--api-key", default=_env("api_key", None),
                    help="require `Authorization: Bearer KEY` on every route but /health")
    ap.add_argument("--device", default=_env("device", None), help="cpu or cuda (default: CUDA if available)")
    ap.add_argument("--threads", type=int, default=_env("threads", None),
                    help="intra-op threads per model (default: the usable cores, see README 'Serve over HTTP')")
    ap.add_argument("--max-batch-items", type=int, default=_env("max_batch_items", 32),
                    help="inputs gathered into one batch")
    ap.add_argument("--max-batch-tokens", type=int, default=_env("max_batch_tokens", None),
                    help=f"padded tokens per batch (default: {CPU_BATCH_TOKENS} on CPU, measured with "
                    "benchmarks/serve.py; the model's max_batch_tokens on CUDA)")
    ap.add_argument("--batch-wait-ms", type=float, default=_env("batch_wait_ms", 2.0),
                    help="how long the oldest waiting input may wait for others to join its batch")
    ap.add_argument("--no-batching", action="store_true", default=_env_flag("no_batching"),
                    help="run each request on its own (no batching across requests)")
    ap.add_argument("--max-queue", type=int, default=_env("max_queue", 4096),
                    help="inputs waiting or running per model; beyond it requests get 429 with Retry-After")
    ap.add_argument("--max-inputs", type=int, default=_env("max_inputs", 2048), help="inputs per request (413 beyond)")
    ap.add_argument("--max-chars", type=int, default=_env("max_chars", 100_000),
                    help="characters per input (413 beyond)")
    ap.add_argument("--max-body-bytes", type=int, default=_env("max_body_bytes", 4 * 2**20),
                    help="request body size (413 beyond)")
    ap.add_argument("--request-timeout", type=float, default=_env("request_timeout", 30.0),
                    help="seconds a request may take before it gets 503")
    ap.add_argument("--no-auto-truncate", action="store_true", default=_env_flag("no_auto_truncate"),
                    help="TEI routes: refuse (413) inputs longer than the model's max length unless the request "
                    "sends truncate=true (default: truncate, as encode() does)")
    ap.add_argument("--drain-timeout", type=float, default=_env("drain_timeout", 30.0),
                    help="on SIGTERM, seconds to let in-flight requests finish before exiting")
    ap.add_argument("--http", choices=("auto", "h11", "httptools"), default=_env("http", "auto"),
                    help="uvicorn's HTTP parser (auto: httptools when installed, else h11)")
    ap.add_argument("--default-model", default=_env("default_model", None),
                    help="the served name a request without `model` gets (default: the only model that fits the route)")
    ap.add_argument("--header-timeout", type=float, default=_env("header_timeout", 10.0),
                    help="seconds a client may take to send a request's headers before it is disconnected")
    ap.add_argument("--body-timeout", type=float, default=_env("body_timeout", 30.0),
                    help="seconds a client may take to send a request's body (408 beyond)")
    ap.add_argument("--keep-alive-timeout", type=float, default=_env("keep_alive_timeout", 5.0),
                    help="seconds an idle keep-alive connection stays open")
    ap.add_argument("--max-connections", type=int, default=_env("max_connections", 1024),
                    help="open connections (and requests in progress); beyond it new requests get 503")
    ap.add_argument("--max-header-bytes", type=int, default=_env("max_header_bytes", 16384),
                    help="size of a request's headers (431 beyond)")
    ap.add_argument("--log-level", default=_env("log_level", "info"))
    return ap


def _check(args: argparse.Namespace, ap: argparse.ArgumentParser) -> None:
    if not args.models:
        args.models = _env("models", "").split()
    if not args.models:
        ap.error("give at least one MODEL (or set LIGHTEMBED_MODELS)")
    for name in ("max_batch_items", "max_queue", "max_inputs", "max_chars", "max_body_bytes", "max_connections",
                 "max_header_bytes"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.max_batch_tokens is not None and args.max_batch_tokens < 1:
        ap.error("--max-batch-tokens must be at least 1")
    if args.http not in ("auto", "h11", "httptools"):  # argparse checks choices only on the command line
        ap.error(f"--http (or LIGHTEMBED_HTTP) must be auto, h11 or httptools, got {args.http!r}")
    if args.request_timeout <= 0 or args.drain_timeout < 0 or args.batch_wait_ms < 0:
        ap.error("--request-timeout must be > 0, --drain-timeout and --batch-wait-ms >= 0")
    if min(args.header_timeout, args.body_timeout, args.keep_alive_timeout) <= 0:
        ap.error("--header-timeout, --body-timeout and --keep-alive-timeout must be > 0")
    if args.api_key is not None and not args.api_key.strip():
        ap.error("--api-key (or LIGHTEMBED_API_KEY) is set but empty; give a key, or unset it to serve without one")


def build(args: argparse.Namespace) -> tuple[Any, Any]:
    """(ASGI app, state) for parsed flags: load every model as the class its folder is, one batcher each."""
    from lightembed.server.app import State, build_app
    from lightembed.server.batcher import Batcher
    from lightembed.server.loading import ModelSpec, load_model, other_faces
    from lightembed.server.metrics import Metrics
    from lightembed.server.protocol import Limits
    from lightembed.server.service import Served, Settings

    metrics = Metrics()
    served = []
    specs = [ModelSpec.parse(m) for m in args.models]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise LightembedValueError(f"Two models are served under the same name: {names}; give names with MODEL=NAME.")
    if args.default_model is not None and args.default_model not in names:
        raise LightembedValueError(f"--default-model {args.default_model!r} is not one of the served names {names}.")
    for spec in specs:
        kind, model = load_model(spec, threads=args.threads, device=args.device)
        # The batcher plans with the model's own stage (model.plan), so the server's cap is the model's.
        model.max_batch_tokens = args.max_batch_tokens or (
            CPU_BATCH_TOKENS if model.device == "cpu" else model.max_batch_tokens
        )

        def batcher_for(model: Any, name: str = spec.name) -> Batcher:
            return Batcher(
                model,
                max_items=args.max_batch_items,
                wait_s=args.batch_wait_ms / 1000,
                max_queue=args.max_queue,
                merge=not args.no_batching,
                name=name,
                observe=metrics.observer(name),
            )

        faces = tuple(Served(spec.name, k, m, batcher_for(m), spec.source) for k, m in other_faces(kind, model))
        served.append(Served(spec.name, kind, model, batcher_for(model), spec.source, faces=faces))
    settings = Settings(
        limits=Limits(args.max_inputs, args.max_chars, args.max_body_bytes),
        auto_truncate=not args.no_auto_truncate,
        request_timeout=args.request_timeout,
        body_timeout=args.body_timeout,
        default_model=args.default_model,
    )
    state = State()
    return build_app(served, settings, api_key=args.api_key or None, metrics=metrics, state=state), state


def log_config(level: str = "info") -> dict[str, Any]:
    """uvicorn's logging setup with a timestamp on every line (access log included), and the server's own
    "lightembed.server" messages (the "ready" line, failures) through the same handler."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    for formatter in config["formatters"].values():
        formatter["fmt"] = "%(asctime)s " + formatter["fmt"]
        formatter["datefmt"] = "%Y-%m-%dT%H:%M:%S%z"
    config["loggers"]["lightembed"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return config


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `lightembed serve`; returns the exit status."""
    ap = parser()
    args = ap.parse_args(list(sys.argv[1:] if argv is None else argv))
    _check(args, ap)
    try:
        import starlette  # noqa: F401
        import uvicorn
    except ImportError:
        print(SERVER_EXTRA_MISSING, file=sys.stderr)
        return 2
    try:
        app, state = build(args)
    except (TypeError, ValueError, OSError) as exc:
        print(f"lightembed serve: error: {exc}", file=sys.stderr)
        return 2

    class DrainingServer(uvicorn.Server):
        """uvicorn, but SIGTERM/SIGINT first drain: 503 for new requests, in-flight ones finish, then exit 0."""

        deadline = 0.0

        def handle_exit(self, sig: int, frame: Any) -> None:
            if state.draining:  # a second signal: stop now
                self.should_exit = True
                self.force_exit = True
                return
            state.draining = True
            self.deadline = time.monotonic() + args.drain_timeout

        async def on_tick(self, counter: int) -> bool:
            if state.draining and not self.should_exit:
                if state.in_flight == 0 or time.monotonic() >= self.deadline:
                    self.should_exit = True
                    # uvicorn's own graceful wait comes after ours: only what is left of --drain-timeout.
                    left = max(0.1, self.deadline - time.monotonic())  # uvicorn waits with asyncio: a float works
                    self.config.timeout_graceful_shutdown = left  # type: ignore[assignment]
            return await super().on_tick(counter)

    from lightembed.server.http import hardened_protocol

    try:
        protocol = hardened_protocol(args.http, args.header_timeout, args.max_header_bytes)
    except ImportError as exc:
        print(f"lightembed serve: error: {exc}", file=sys.stderr)
        return 2
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        log_config=log_config(args.log_level),
        access_log=True,
        timeout_graceful_shutdown=max(1, int(args.drain_timeout)),
        timeout_keep_alive=args.keep_alive_timeout,
        limit_concurrency=args.max_connections,
        h11_max_incomplete_event_size=args.max_header_bytes,
        lifespan="on",
        http=protocol,
    )
    server = DrainingServer(config)
    server.run()
    return 0 if server.started else 1
