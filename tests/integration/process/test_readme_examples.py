"""The README's tour runs as written against the real server, as `make run` serves it.

The server is started the way `make run` starts it (migrate, seed-demo, serve with the demo
traffic, the embedded SMTP sink and unsigned SendGrid webhooks), on free loopback ports in a
temporary data directory. The README's ```sh blocks then run in order in one bash process with
`set -euo pipefail`, with the README's addresses pointed at this server. grpcurl is not
installed here: the ```sh grpcurl blocks run in the same shell with `grpcurl` recording its
arguments, and each recorded call is made again with grpclib, so the example's request is
still proven.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pool, json_format, message_factory
from grpclib.client import Channel, UnaryUnaryMethod
from grpclib.health.v1 import health_pb2  # noqa: F401  (imported: registers grpc.health.v1 for the replay)
from grpclib.reflection.v1alpha import reflection_grpc, reflection_pb2

from bench.server import ServerProcess, free_port
from handlers.rpc import bidding_pb2, platform_pb2, ranking_pb2  # noqa: F401  (registers our services too)
from tests.conftest import ROOT

README = ROOT / "README.md"
# The addresses the README's examples use (what `make run` listens on), and what replaces them.
HTTP, GRPC, SMTP = "127.0.0.1:8080", "127.0.0.1:9090", "127.0.0.1:2525"
BLOCK = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)

# grpcurl, as a shell function: one JSON line per call with its arguments (and stdin for `-d @`).
RECORD_GRPCURL = """grpcurl() {
  "$TOUR_PYTHON" -c 'import json, sys
argv = sys.argv[1:]
print(json.dumps({"argv": argv, "stdin": sys.stdin.read() if "@" in argv else None}))' "$@" >> "$GRPCURL_CALLS"
}
"""


def readme_blocks() -> list[tuple[str, str]]:
    """The README's shell blocks in order, as (info string, text): `sh` and `sh grpcurl`."""
    blocks = [(info.strip(), body) for info, body in BLOCK.findall(README.read_text())]
    return [(info, body) for info, body in blocks if info.split()[:1] == ["sh"]]


class DemoServer(ServerProcess):
    """`make run`'s server on free ports in `data_dir`, with its default limits: migrate, seed-demo, serve."""

    def __init__(self, data_dir: Path) -> None:
        self.smtp_port = free_port()
        super().__init__(data_dir, False, CONTRAIL__SMTP__PORT=str(self.smtp_port),
                         CONTRAIL__SMTP__EMBEDDED_SINK="true", CONTRAIL__DEMO__TRAFFIC_PER_S="5",
                         CONTRAIL__SENDGRID__ALLOW_UNSIGNED="true")

    def start(self, timeout: float = 30.0) -> ServerProcess:
        for command in ("migrate", "seed-demo"):
            result = self.cli(command)
            assert result.returncode == 0, f"python -m app {command}: {result.stderr}"
        return super().start(timeout)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    srv = DemoServer(tmp_path_factory.mktemp("readme") / "var")
    try:
        srv.start()
        yield srv
    finally:
        code = srv.terminate()
    assert code == 0, f"the server did not drain and exit 0 on SIGTERM: {srv.log_path.read_text()[-2000:]}"


def _tour_script(server: DemoServer) -> str:
    """The README's blocks as one bash script, its addresses pointed at `server`."""
    text = RECORD_GRPCURL
    for info, body in readme_blocks():
        if info != "sh" and info != "sh grpcurl":
            raise AssertionError(f"a README block marked ```{info} is neither run nor checked by this test")
        text += f"echo '--- block: {info}'\n{body}"
    for address, port in ((HTTP, server.http_port), (GRPC, server.grpc_port), (SMTP, server.smtp_port)):
        text = text.replace(address, f"127.0.0.1:{port}")
    return "set -euo pipefail\n" + text


def _grpcurl_args(argv: list[str]) -> tuple[dict[str, str], str | None, list[str]]:
    """grpcurl's command line: its headers, its data and its positional arguments."""
    headers: dict[str, str] = {}
    data, positional, i = None, [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == "-plaintext":
            i += 1
        elif arg == "-H":
            name, _, value = argv[i + 1].partition(":")
            headers[name.strip().lower()] = value.strip()
            i += 2
        elif arg == "-d":
            data, i = argv[i + 1], i + 2
        elif arg.startswith("-"):
            raise AssertionError(f"a grpcurl flag this test cannot replay: {arg}")
        else:
            positional.append(arg)
            i += 1
    return headers, data, positional


async def _grpc_call(server: DemoServer, call: dict[str, Any]) -> Any:
    """What grpcurl would have done with `call`'s arguments, done with grpclib."""
    headers, data, positional = _grpcurl_args(call["argv"])
    if data == "@":
        data = call["stdin"]
    address, what = positional[0], positional[1:]
    assert address == f"127.0.0.1:{server.grpc_port}", f"grpcurl addresses {address}, not the server"
    channel = Channel("127.0.0.1", server.grpc_port)
    try:
        if what == ["list"]:
            stub = reflection_grpc.ServerReflectionStub(channel)
            async with stub.ServerReflectionInfo.open(timeout=5) as stream:
                await stream.send_message(reflection_pb2.ServerReflectionRequest(list_services=""), end=True)
                reply = await stream.recv_message()
            assert reply is not None, "reflection answered nothing"
            return sorted(s.name for s in reply.list_services_response.service)
        (full_name,) = what
        service, _, name = full_name.rpartition("/")
        method = descriptor_pool.Default().FindMethodByName(f"{service}.{name}")
        request_type = message_factory.GetMessageClass(method.input_type)
        reply_type = message_factory.GetMessageClass(method.output_type)
        request = json_format.Parse(data or "{}", request_type())
        unary = UnaryUnaryMethod(channel, f"/{service}/{name}", request_type, reply_type)
        reply = await unary(request, metadata=headers, timeout=5)
        return json_format.MessageToDict(reply, preserving_proto_field_name=True)
    finally:
        channel.close()


async def test_the_readme_tour_works_as_written(server: DemoServer, tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        pytest.skip("the README's examples need curl: install the Debian package `curl`")
    readme = README.read_text()
    for address in (HTTP, GRPC, SMTP):
        assert address in readme, f"the README no longer uses {address}; update this test's addresses"
    calls = tmp_path / "grpcurl-calls.jsonl"
    calls.touch()
    # python3 as the README uses it: this interpreter, first on PATH.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(sys.executable)
    env = {**server.env, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
           "TOUR_PYTHON": sys.executable, "GRPCURL_CALLS": str(calls)}
    result = await asyncio.to_thread(subprocess.run, ["bash", "-c", _tour_script(server)], cwd=tmp_path,
                                     env=env, capture_output=True, text=True, timeout=60, check=False)
    out = result.stdout
    assert result.returncode == 0, f"a README block failed (exit {result.returncode}):\n{out}\n{result.stderr}"
    lines = out.splitlines()

    # Search, accept, pay, barcodes.
    assert re.search(r'^\{"economy": \d+, "premium": \d+\}$', out, re.MULTILINE), out
    bundles = r"(flight_only|comfort|premium\w*|corporate_flex|group_bags)"
    assert re.search(rf"^{bundles} CT\d+-\S+ \d+ USD$", out, re.MULTILINE)
    assert "FULFILLED" in lines, out
    barcodes = json.loads(next(line for line in lines if line.startswith('[{"code": ')))
    assert barcodes and all(b["code"] and b["consumed_at"] is None for b in barcodes)
    assert {b["kind"] for b in barcodes} >= {"Flight"}

    # A bid, its price and a charged win notice.
    assert re.search(r"^[a-z]{3}-[a-z]{3}-300x250$", out, re.MULTILINE), out
    crid = next(i for i, line in enumerate(lines) if re.fullmatch(r"[a-z]{3}-[a-z]{3}-300x250", line))
    assert float(lines[crid + 1]) >= 0.5  # the bid's price clears the floor
    assert lines[crid + 2] == "true"  # the win notice charged the bid

    # Stars (the block after the grpcurl one): the paid order's, a point-of-sale earn, a redemption of 25.
    loyalty = lines[lines.index("--- block: sh", lines.index("--- block: sh grpcurl")) + 1:]
    balance_after_order, earned, balance_after_redeem = (int(x) for x in loyalty[:3])
    assert balance_after_order > 0 and earned > 0
    assert balance_after_redeem == balance_after_order + earned - 25

    # The email in the embedded mailbox, and mail from any SMTP client.
    assert "queued" in lines
    assert "Your trip to Barcelona" in lines and lines[-1] == "Hello, sink", out

    # The grpcurl examples, made with grpclib.
    recorded = [json.loads(line) for line in calls.read_text().splitlines()]
    assert [c["argv"][-1] for c in recorded] == [
        "list", "campaign.bidding.v1.BiddingService/HealthCheck", "campaign.bidding.v1.BiddingService/ProcessBid"]
    services = await _grpc_call(server, recorded[0])
    assert {"campaign.bidding.v1.BiddingService", "contrail.platform.v1.PlatformService",
            "grpc.health.v1.Health"} <= set(services)
    health = await _grpc_call(server, recorded[1])
    assert health["serving"] is True and health["model_version"]
    bid = await _grpc_call(server, recorded[2])
    assert bid["request_id"] == "tour-2" and bid["has_bid"] is True, bid
    assert json.loads(bid["openrtb_json"])["seatbid"][0]["bid"][0]["price"] >= 0.5


def test_every_rest_path_is_in_the_api_guide(server: DemoServer) -> None:
    with urllib.request.urlopen(f"{server.url}/openapi.json", timeout=5) as response:
        paths = json.load(response)["paths"]
    guide = re.sub(r"\{\w+\}", "{}", (ROOT / "docs" / "api.md").read_text())
    missing = [p for p in paths if re.sub(r"\{\w+\}", "{}", p) not in guide]
    assert not missing, f"docs/api.md does not mention {missing}"
