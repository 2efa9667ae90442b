"""What tracing costs the bid path: REST bids against /v1/ping on one node with tracing off, then sampling 1% and
100% of traces to a local OTLP/HTTP receiver, each node measured by `load.run_with_baseline`.

The ping is traced too when tracing is on, so the bid/ping ratio alone would hide a cost both pay: the table also
gives each node's bid rate as a share of the untraced node's. `python -m bench --only tracing`.
"""

from __future__ import annotations

import tempfile
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench import bidding, load
from bench.server import ServerProcess

MODES = (("off", ""), ("sampling 1%", "0.01"), ("sampling 100%", "1.0"))


class _Receiver(BaseHTTPRequestHandler):
    spans = 0
    lock = threading.Lock()

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        count = sum(len(scope.spans) for rs in ExportTraceServiceRequest.FromString(body).resource_spans
                    for scope in rs.scope_spans)
        with _Receiver.lock:
            _Receiver.spans += count
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@dataclass
class Row:
    mode: str
    bid: load.Result
    spans: int


def run_all(seconds: float) -> list[Row]:
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{receiver.server_address[1]}"
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for mode, ratio in MODES:
                env = {"CONTRAIL__TRACING__OTLP_ENDPOINT": endpoint, "CONTRAIL__TRACING__SAMPLE_RATIO": ratio} \
                    if ratio else {}
                node = ServerProcess(Path(tmp) / mode.replace(" ", "-").replace("%", "") / "var",
                                     CONTRAIL__SERVER__LOG_LEVEL="WARNING", **env)
                node.data_dir.mkdir(parents=True)
                admin, exchange = bidding.setup_server(node)
                node.start()
                try:
                    bidding.seed_campaigns(node, admin)
                    before = _Receiver.spans
                    bid = load.run_with_baseline(node.url, bidding.rest_scenarios(exchange)[0], seconds)
                    node.terminate()  # SIGTERM: the node exports what it queued before it exits
                    rows.append(Row(mode, bid, _Receiver.spans - before))
                finally:
                    node.stop()
    finally:
        receiver.shutdown()
    return rows


def report(rows: list[Row]) -> None:
    if not rows:
        return
    off = rows[0].bid.rps
    print("\nTracing's cost on the bid path (REST /v1/bid, 64 candidates; ratio* = bid rps / ping rps in the same run,"
          " ping traced alike; 'of off' = bid rps / the untraced node's)")
    print(f"{'tracing':<16}{'bid req/s':>11}{'ping req/s':>12}{'ratio*':>8}{'of off':>8}{'p99 ms':>9}{'spans':>10}")
    for r in rows:
        ping = r.bid.baseline_rps or 1
        print(f"{r.mode:<16}{r.bid.rps:>11,.0f}{ping:>12,.0f}{r.bid.rps / ping:>8.2f}{r.bid.rps / off:>8.2f}"
              f"{r.bid.p99_ms:>9.2f}{r.spans:>10,}"
              f"  rounds {' '.join(f'{x:.2f}' for x in r.bid.ratios)}")
