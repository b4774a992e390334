"""`/metrics` (`charrnn serve --metrics`): the server's counts in Prometheus' text format.

Made with the Prometheus client library, on a registry of this server's own (no process-wide
state). Requests are counted by the route that answered them and its status; the engine's counts
are read when scraped; time to first character, step time and batch size are histograms.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from charrnn.commands.serving.state import Server

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ROWS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """The server's metrics; ``server``'s hooks feed the histograms."""

    def __init__(self, server: Server):
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "charrnn_requests", "HTTP requests answered, by route and status.", ["endpoint", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.first_character = Histogram(
            "charrnn_time_to_first_character_seconds",
            "From a request's admission to its first generated text.",
            buckets=SECONDS,
            registry=self.registry,
        )
        self.step = Histogram("charrnn_step_seconds", "One engine step.", buckets=SECONDS, registry=self.registry)
        self.batch = Histogram(
            "charrnn_batch_size", "Streams stepped together, per step.", buckets=ROWS, registry=self.registry
        )
        self.registry.register(_EngineCounts(server))
        server.first_text = self.first_character.observe
        server.observe_step = self._observe_step

    def _observe_step(self, seconds: float, batch: int) -> None:
        self.step.observe(seconds)
        self.batch.observe(batch)

    def count(self, endpoint: str, status: int) -> None:
        self.requests.labels(endpoint, str(status)).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _EngineCounts(Collector):
    """The engine's own counters and the streams in hand, read at each scrape."""

    def __init__(self, server: Server):
        self.server = server

    def collect(self) -> Iterator[Metric]:
        engine, counts = self.server.engine, self.server.counts
        yield GaugeMetricFamily("charrnn_ready", "1 once the model has loaded.", value=int(engine is not None))
        if engine is None:
            return
        yield GaugeMetricFamily("charrnn_active_streams", "Streams in the batch.", value=engine.active)
        yield GaugeMetricFamily("charrnn_waiting_streams", "Streams waiting for a row.", value=engine.waiting)
        yield CounterMetricFamily("charrnn_characters", "Characters generated.", value=engine.characters)
        yield CounterMetricFamily("charrnn_steps", "Engine steps.", value=engine.steps)
        yield CounterMetricFamily("charrnn_rejected_requests", "Requests refused: no room.", value=counts["rejected"])
        yield CounterMetricFamily(
            "charrnn_stalled_requests", "Requests ended because their client stopped reading.", value=counts["stalled"]
        )
        yield CounterMetricFamily(
            "charrnn_timed_out_requests", "Requests ended by --request-timeout.", value=counts["timed_out"]
        )
        yield CounterMetricFamily(
            "charrnn_cut_off_connections",
            "Connections aborted after --stall-timeout without the client reading.",
            value=counts["cut_off"],
        )
