"""contrail.platform.v1.PlatformService."""

from __future__ import annotations

import time

from grpclib.server import Stream

from app import __version__
from app.runtime.health import Health
from handlers.rpc import platform_grpc, platform_pb2
from handlers.rpc.server import recv_one


class PlatformService(platform_grpc.PlatformServiceBase):
    ROLES: tuple[str, ...] = ()  # any caller with valid credentials

    def __init__(self, health: Health) -> None:
        self._health = health

    async def Echo(self, stream: Stream[platform_pb2.EchoRequest, platform_pb2.EchoReply]) -> None:
        request = await recv_one(stream)
        await stream.send_message(platform_pb2.EchoReply(message=request.message,
                                                         server_time_us=int(time.time() * 1e6)))

    async def GetStatus(self, stream: Stream[platform_pb2.StatusRequest, platform_pb2.StatusReply]) -> None:
        await stream.recv_message()
        report = self._health.report()
        await stream.send_message(platform_pb2.StatusReply(state=report.state, version=__version__,
                                                           tasks=report.tasks))
