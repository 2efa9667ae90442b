"""What tracing costs the bid path: REST bids against /v1/ping on one node with tracing off, then sampling 1% and
100% of new traces to a local OTLP/HTTP receiver, in alternating rounds on each node.

The ping is traced too when tracing is on, so the bid/ping ratio alone would hide a cost both pay: the table also
gives the CPU each request costs the server, the measure the machine's other load moves least.
`python -m bench --only tracing`.
"""

from __future__ import annotations

import os
import statistics
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


def _cpu(server: ServerProcess) -> tuple[float, float]:
    """Seconds of CPU the server has used: its main thread (the event loop), and the whole process (the span
    exporter's thread included)."""
    assert server.proc is not None
    pid = server.proc.pid
    tick = os.sysconf("SC_CLK_TCK")
    out = []
    for path in (f"/proc/{pid}/task/{pid}/stat", f"/proc/{pid}/stat"):
        with open(path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        out.append((int(fields[11]) + int(fields[12])) / tick)
    return out[0], out[1]


@dataclass
class Row:
    mode: str
    ping_rps: float
    bid_rps: float
    ratio: float                # bid rps / ping rps, the median of the rounds'
    ratios: list[float]
    bid_p99_ms: float
    cpu_us: dict[str, float]    # per request, the median of the rounds': ping/bid x loop/process
    spans: int


def _measure(node: ServerProcess, exchange: str, seconds: float, rounds: int = 3) -> tuple[dict, list[float]]:
    """Ping and bid runs, alternating; each run's rate, p99 and CPU per request."""
    runs: dict[str, list[tuple[float, float, float, float]]] = {"ping": [], "bid": []}
    for _ in range(rounds):
        for name, scenario in (("ping", load.baseline()), ("bid", bidding.rest_scenarios(exchange)[0])):
            loop0, proc0 = _cpu(node)
            result = load.run(node.url, scenario, seconds)
            loop1, proc1 = _cpu(node)
            requests = max(1.0, result.rps * seconds)
            runs[name].append((result.rps, result.p99_ms, (loop1 - loop0) / requests * 1e6,
                               (proc1 - proc0) / requests * 1e6))
    ratios = [bid[0] / ping[0] for ping, bid in zip(runs["ping"], runs["bid"], strict=True)]
    return runs, ratios


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
                    load.run(node.url, bidding.rest_scenarios(exchange)[0], 1.0)  # warm: compiled kernels, caches
                    before = _Receiver.spans
                    runs, ratios = _measure(node, exchange, seconds)
                    node.terminate()  # SIGTERM: the node exports what it queued before it exits
                    med = statistics.median
                    rows.append(Row(mode, med(r[0] for r in runs["ping"]), med(r[0] for r in runs["bid"]),
                                    med(ratios), ratios, med(r[1] for r in runs["bid"]),
                                    {f"{name} {where}": med(r[col] for r in runs[name])
                                     for name in ("ping", "bid") for col, where in ((2, "loop"), (3, "process"))},
                                    _Receiver.spans - before))
                finally:
                    node.stop()
    finally:
        receiver.shutdown()
    return rows


def report(rows: list[Row]) -> None:
    if not rows:
        return
    off = rows[0]
    print("\nTracing's cost on the bid path (REST /v1/bid, 64 candidates, against /v1/ping; three alternating rounds"
          " each, medians; ratio = bid rps / ping rps; CPU per request in us, the event loop's and the whole"
          " process's, the span exporter's thread included; + = more than with tracing off)")
    print(f"{'tracing':<16}{'ping/s':>9}{'bid/s':>8}{'ratio':>7}{'bid p99':>9}{'ping cpu':>10}{'bid cpu':>10}"
          f"{'bid cpu (proc)':>16}{'spans':>10}")
    for r in rows:
        extra = f" (+{r.cpu_us['bid process'] - off.cpu_us['bid process']:.0f})" if r is not off else ""
        print(f"{r.mode:<16}{r.ping_rps:>9,.0f}{r.bid_rps:>8,.0f}{r.ratio:>7.2f}{r.bid_p99_ms:>9.2f}"
              f"{r.cpu_us['ping loop']:>10.0f}{r.cpu_us['bid loop']:>10.0f}{r.cpu_us['bid process']:>9.0f}{extra:<7}"
              f"{r.spans:>10,}  rounds {' '.join(f'{x:.2f}' for x in r.ratios)}")
