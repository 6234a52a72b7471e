"""A typed Python client for comfy-gateway, blocking (Client) and asyncio (AsyncClient).

    from comfy_gateway.client import Client

    with Client("http://127.0.0.1:8000", api_key="...") as gw:
        for event in gw.stream(workflow):
            print(event.status, event.queue_position, event.progress)
        gw.download_all(event.result, "out/")

Errors the gateway answers with are raised as GatewayError subclasses carrying its `detail`.
"""

from .aio import AsyncClient
from .errors import (
                     Conflict,
                     GatewayError,
                     GatewayUnreachable,
                     InvalidRequest,
                     NotFound,
                     NotSupported,
                     QueueFull,
                     ServerError,
                     Unauthorized,
                     Unavailable,
)
from .models import (
                     TERMINAL,
                     BackendHealth,
                     Durations,
                     Health,
                     JobError,
                     JobResult,
                     OutputFile,
                     Progress,
                     QueueInfo,
                     QueuePosition,
                     Readiness,
                     StageInfo,
                     StreamEvent,
)
from .sync import Client

__all__ = [
    "AsyncClient", "Client", "Conflict", "GatewayError", "GatewayUnreachable", "InvalidRequest", "NotFound",
    "NotSupported", "QueueFull", "ServerError", "Unauthorized", "Unavailable", "TERMINAL", "BackendHealth",
    "Durations", "Health", "JobError", "JobResult", "OutputFile", "Progress", "QueueInfo", "QueuePosition", "Readiness",
    "StageInfo", "StreamEvent",
]
