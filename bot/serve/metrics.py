"""Prometheus metrics of one server (its own registry, so two servers in one process never share counters).

Real-time factor here is compute seconds / audio seconds (below 1 is faster than real time, vLLM-Omni's sense)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("narrator_requests", "HTTP requests by route and status", ["route", "status"],
                                registry=r)  # fmt: skip
        self.errors = Counter("narrator_errors", "Refused or failed requests by error code", ["code"], registry=r)
        self.queue_depth = Gauge("narrator_queue_depth", "Speech requests admitted and waiting for first audio",
                                 registry=r)  # fmt: skip
        self.active_streams = Gauge("narrator_active_streams", "Speech responses being sent", registry=r)
        self.batch_rows = Gauge("narrator_batch_rows", "Renders inside the engine now (rows of its decode step)",
                                registry=r)  # fmt: skip
        self.first_audio = Histogram(
            "narrator_first_audio_seconds", "Seconds from request to the first audio byte sent", registry=r,
            buckets=(0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0),
        )  # fmt: skip
        self.real_time_factor = Histogram(
            "narrator_real_time_factor", "Render seconds / audio seconds per request (below 1: faster than real time)",
            registry=r, buckets=(0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 4.0, 8.0),
        )  # fmt: skip
        self.audio_seconds = Counter("narrator_audio_seconds", "Seconds of audio sent", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
