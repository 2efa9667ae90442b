"""Distributed tracing: OpenTelemetry spans exported over OTLP/HTTP, W3C `traceparent` in and out.

Off (no collector configured) it is `Tracing.off()`: `enabled` is False, `tracer` is None, and every
instrumented place checks that one attribute before doing anything else, so the bid path pays nothing.
docs/operations.md, "Tracing".
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from types import SimpleNamespace
from typing import Any

import aiohttp
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from app.runtime.metrics import Metrics

log = logging.getLogger("contrail.tracing")
_PROPAGATOR = TraceContextTextMapPropagator()
# The Tracing of the work being done (set inside its spans): outbound clients reach it through the context, so a
# call is traced when, and only when, it is made for traced work, with no tracer handed to every adapter.
_ACTIVE: ContextVar[Tracing | None] = ContextVar("contrail_tracing", default=None)
SERVER, CLIENT, INTERNAL, CONSUMER = SpanKind.SERVER, SpanKind.CLIENT, SpanKind.INTERNAL, SpanKind.CONSUMER


class _CountingExporter(SpanExporter):
    """The OTLP exporter, counted: spans exported and spans the collector did not take."""

    def __init__(self, inner: SpanExporter, metrics: Metrics) -> None:
        self._inner, self._metrics = inner, metrics

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self._inner.export(spans)
        outcome = "exported" if result is SpanExportResult.SUCCESS else "failed"
        self._metrics.trace_spans.labels(outcome).inc(len(spans))
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._inner.force_flush(timeout_millis)


class Tracing:
    """This node's tracer, or nothing. Spans are queued (bounded by `tracing.max_queue_spans`; a full queue
    drops, never blocks) and exported in batches from a thread of the SDK's."""

    turned_on = False  # in this process, ever (sessions opened later read it)

    def __init__(self, tracer: Tracer | None, provider: TracerProvider | None = None, sample_ratio: float = 1.0,
                 rng: random.Random | None = None) -> None:
        self.tracer = tracer
        self.enabled = tracer is not None
        self.sample_ratio = sample_ratio
        self._random = (rng or random.Random()).random
        if self.enabled:
            Tracing.turned_on = True
        self._provider = provider

    @classmethod
    def off(cls) -> Tracing:
        return cls(None)

    @classmethod
    def from_config(cls, endpoint: str, *, sample_ratio: float, service_name: str, node_id: str,
                    headers: Mapping[str, str], max_queue_spans: int, export_interval_ms: int,
                    export_timeout_ms: int, metrics: Metrics, ca_file: str = "", client_cert_file: str = "",
                    client_key_file: str = "") -> Tracing:
        if not endpoint:
            return cls.off()
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        attributes = {"service.name": service_name}
        if node_id:
            attributes["service.instance.id"] = node_id
        # Parent-based: a caller's traceparent decides whatever the ratio, so a trace stays whole. New traces are
        # sampled by span() before any span exists (see there), so the SDK records every root it is given.
        provider = TracerProvider(resource=Resource.create(attributes), sampler=ParentBased(ALWAYS_ON))
        exporter = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces", headers=dict(headers),
                                    timeout=export_timeout_ms / 1000, certificate_file=ca_file or None,
                                    client_certificate_file=client_cert_file or None,
                                    client_key_file=client_key_file or None)
        provider.add_span_processor(BatchSpanProcessor(
            _CountingExporter(exporter, metrics), max_queue_size=max_queue_spans,
            schedule_delay_millis=export_interval_ms, max_export_batch_size=min(512, max_queue_spans),
            export_timeout_millis=export_timeout_ms))
        return cls(provider.get_tracer("contrail"), provider, sample_ratio)

    # ---- propagation -------------------------------------------------------------------

    @staticmethod
    def extract(carrier: Mapping[str, Any]) -> Context | None:
        """The caller's context from its `traceparent` (HTTP headers, gRPC metadata, NATS headers), or None."""
        if "traceparent" not in carrier:
            return None
        return _PROPAGATOR.extract({k: str(v) for k, v in carrier.items() if k in ("traceparent", "tracestate")})

    @staticmethod
    def inject(carrier: MutableMapping[str, str]) -> None:
        """Add the current span's `traceparent` (and `tracestate`) to an outgoing call's headers."""
        _PROPAGATOR.inject(carrier)

    # ---- spans -------------------------------------------------------------------------

    @contextmanager
    def span(self, name: str, *, kind: SpanKind = INTERNAL, attributes: Mapping[str, Any] | None = None,
             context: Context | None = None, links: Sequence[Link] = ()) -> Iterator[Span | None]:
        """A span around a block, current inside it; an exception marks it failed. Yields None when off."""
        if self.tracer is None:
            yield None
            return
        if self.sample_ratio < 1.0 and not trace.get_current_span(context).get_span_context().is_valid \
                and self._random() >= self.sample_ratio:
            # A new trace left out: no span at all. The SDK's own sampler would still make (and later drop) a
            # non-recording span per request, about 8 us each; this costs a random number.
            yield None
            return
        active = _ACTIVE.set(self)
        try:
            with self.tracer.start_as_current_span(name, context=context, kind=kind, attributes=attributes,
                                                   links=links, record_exception=True,
                                                   set_status_on_exception=True) as span:
                yield span
        finally:
            _ACTIVE.reset(active)

    def record(self, name: str, *, parent: Context, started_ns: int, kind: SpanKind = INTERNAL,
               attributes: Mapping[str, Any] | None = None, links: Sequence[Link] = ()) -> None:
        """A span that already happened (started at `started_ns`, ending now), under `parent`."""
        if self.tracer is None:
            return
        span = self.tracer.start_span(name, context=parent, kind=kind, attributes=attributes, links=links,
                                      start_time=started_ns)
        span.end()

    @staticmethod
    def current() -> Context | None:
        """The current context, if a sampled span is in it (what a later `record` can hang under)."""
        if not trace.get_current_span().is_recording():
            return None
        return otel_context.get_current()

    @staticmethod
    def link_to_current() -> list[Link]:
        """A link to the current span (a long-lived connection's, for the messages it carries), or none."""
        ctx = trace.get_current_span().get_span_context()
        return [Link(ctx)] if ctx.is_valid else []

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Export every ended span now (blocking; from a thread)."""
        return self._provider.force_flush(int(timeout_s * 1000)) if self._provider is not None else True

    @staticmethod
    def failed(span: Span | None, description: str) -> None:
        if span is not None:
            span.set_status(Status(StatusCode.ERROR, description))

    def shutdown(self) -> None:
        """Export what is queued (bounded by the export timeout) and stop."""
        if self._provider is not None:
            started = time.monotonic()
            self._provider.shutdown()
            log.info("traces flushed", extra={"seconds": round(time.monotonic() - started, 3)})


def log_ids() -> dict[str, str] | None:
    """The current trace and span ids for a log line, or None outside a sampled span."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return {"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x")}


# ---- outbound calls ------------------------------------------------------------------------


@contextmanager
def outbound(name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[dict[str, str]]:
    """A client span around a call made for traced work (gRPC to a remote model, SMTP); yields the headers that
    carry it to the other side (`traceparent`), empty when the work is not traced."""
    tracing = _ACTIVE.get()
    if tracing is None or not trace.get_current_span().is_recording():
        yield {}
        return
    with tracing.span(name, kind=CLIENT, attributes=attributes):
        headers: dict[str, str] = {}
        _PROPAGATOR.inject(headers)
        yield headers


async def _http_start(session: aiohttp.ClientSession, ctx: SimpleNamespace,
                      params: aiohttp.TraceRequestStartParams) -> None:
    ctx.span = None
    tracing = _ACTIVE.get()
    if tracing is None or tracing.tracer is None or not trace.get_current_span().is_recording():
        return
    url = params.url
    ctx.span = span = tracing.tracer.start_span(
        f"{params.method} {url.host}", kind=CLIENT,
        attributes={"http.request.method": params.method, "server.address": url.host or "",
                    "server.port": url.port or 0, "url.full": str(url.with_query(None))})
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    params.headers.update(carrier)


async def _http_end(session: aiohttp.ClientSession, ctx: SimpleNamespace,
                    params: aiohttp.TraceRequestEndParams) -> None:
    span = getattr(ctx, "span", None)
    if span is not None:
        span.set_attribute("http.response.status_code", params.response.status)
        if params.response.status >= 500:
            span.set_status(Status(StatusCode.ERROR, f"HTTP {params.response.status}"))
        span.end()


async def _http_failed(session: aiohttp.ClientSession, ctx: SimpleNamespace,
                       params: aiohttp.TraceRequestExceptionParams) -> None:
    span = getattr(ctx, "span", None)
    if span is not None:
        span.set_status(Status(StatusCode.ERROR, type(params.exception).__name__))
        span.end()


def http_trace_configs() -> list[aiohttp.TraceConfig]:
    """For every outbound aiohttp session (DSPs, partners' webhooks, task, asset and BI tools, channel providers):
    a client span and a `traceparent` header on each request made for traced work. None in a process where
    tracing was never turned on: aiohttp's per-request trace signals would cost the DSP calls of every bid."""
    if not Tracing.turned_on:
        return []
    config = aiohttp.TraceConfig()
    config.on_request_start.append(_http_start)
    config.on_request_end.append(_http_end)
    config.on_request_exception.append(_http_failed)
    return [config]
