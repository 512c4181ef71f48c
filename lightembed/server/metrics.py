"""Prometheus metrics of one server (prometheus_client: small, pure Python, the reference text format)."""

from __future__ import annotations

from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics", "CONTENT_TYPE"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_TOKEN_BUCKETS = (16, 64, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)


class Metrics:
    """The server's counters, gauges and histograms in their own registry (several apps in one process, as in
    tests, do not collide)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "lightembed_requests", "HTTP requests answered, by route and status.", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "lightembed_request_duration_seconds", "Time to answer a request, by route.", ["route"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.queue = Gauge("lightembed_queue_depth", "Inputs waiting for a batch, by model.", ["model"], registry=r)
        self.batch_rows = Histogram(
            "lightembed_batch_size", "Inputs per graph run group, by model.", ["model"], buckets=_ROW_BUCKETS, registry=r
        )
        self.batch_tokens = Histogram(
            "lightembed_batch_padded_tokens", "Padded tokens per batch group, by model.", ["model"],
            buckets=_TOKEN_BUCKETS, registry=r,
        )
        self.batch_seconds = Histogram(
            "lightembed_batch_duration_seconds", "Inference time per batch group, by model.", ["model"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.inferred = Counter("lightembed_inputs_inferred", "Inputs run through a model, by model.", ["model"], registry=r)
        self.tokens = Counter("lightembed_tokens", "Tokens of accepted inputs (after truncation), by model.", ["model"], registry=r)
        self.in_flight = Gauge("lightembed_requests_in_flight", "Requests being answered.", registry=r)

    def observer(self, model: str) -> Callable[[int, int, float], None]:
        """The batcher's callback for `model`: rows, padded tokens and seconds of each batch group."""
        rows_h, tokens_h, secs_h, inferred = (
            self.batch_rows.labels(model), self.batch_tokens.labels(model), self.batch_seconds.labels(model),
            self.inferred.labels(model),
        )

        def observe(rows: int, padded: int, seconds: float) -> None:
            rows_h.observe(rows)
            tokens_h.observe(padded)
            secs_h.observe(seconds)
            inferred.inc(rows)

        return observe

    def count_tokens(self, model: str, tokens: int) -> None:
        self.tokens.labels(model).inc(tokens)

    def render(self) -> bytes:
        return generate_latest(self.registry)
