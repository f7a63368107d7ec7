"""The server's Prometheus metrics (`GET /metrics`): requests, queue depth, batch size, tokens and latencies.

Names follow Prometheus conventions (`_total` counters, `_seconds` histograms). Each server has its own registry,
so several servers in one process (tests) do not share counts.
"""

from __future__ import annotations

from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

disable_created_metrics()  # the *_created series only double the output here

# Latency buckets from 5 ms to 30 s: a CPU step is tens of milliseconds, a long prefill can take seconds.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServingMetrics:
    def __init__(self, queue_depth: Callable[[], float], running: Callable[[], float]):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("foresight_requests_total", "HTTP requests answered, by route and status code",
                                ["route", "status"], registry=r)
        Gauge("foresight_queue_depth", "requests waiting for a row of the running batch",
              registry=r).set_function(queue_depth)
        Gauge("foresight_running_sequences", "sequences in the running batch (one per choice)",
              registry=r).set_function(running)
        self.prompt_tokens = Counter("foresight_prompt_tokens_total", "prompt tokens prefilled", registry=r)
        self.generated_tokens = Counter("foresight_generated_tokens_total", "tokens generated", registry=r)
        self.time_to_first_token = Histogram("foresight_time_to_first_token_seconds",
                                             "from a request's arrival to its first generated token",
                                             buckets=_LATENCY_BUCKETS, registry=r)
        self.inter_token_latency = Histogram("foresight_inter_token_latency_seconds",
                                             "between successive tokens of one sequence",
                                             buckets=_LATENCY_BUCKETS, registry=r)

    # The engine's Metrics protocol (called on the engine thread; prometheus_client is thread-safe).

    def add_prompt_tokens(self, n: int) -> None:
        self.prompt_tokens.inc(n)

    def observe_first_token(self, seconds: float) -> None:
        self.generated_tokens.inc()
        self.time_to_first_token.observe(seconds)

    def observe_next_token(self, seconds: float) -> None:
        self.generated_tokens.inc()
        self.inter_token_latency.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
