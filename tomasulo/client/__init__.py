"""Clients of the tomasulo service (``tomasulo serve``): ``Client`` and ``AsyncClient``.

>>> from tomasulo.client import Client                                     # doctest: +SKIP
>>> with Client("http://127.0.0.1:8080", api_key="tmsk_...") as client:   # doctest: +SKIP
...     run = client.create_run(query="What is 6 * 7?", wait=30)
...     print(run.status, run.answer)

Events come back as the library's own :class:`~tomasulo.dispatcher.Event` objects, read from
Server-Sent Events that resume after a dropped connection; errors are
:class:`~tomasulo.exceptions.ServiceError` with the problem's status, type, detail and request id.
"""

import typing

from ..exceptions import ServiceConnectionError, ServiceError, ServiceNotFound, ServiceRateLimited
from ._cli import remote_app  # typer only: httpx and the library load with the first client

if typing.TYPE_CHECKING:
    from ._async import AsyncClient
    from ._base import DEFAULT_URL, Retries
    from ._models import (
        Batch,
        BatchItem,
        PlanProblem,
        PlanTask,
        PlanValidation,
        Run,
        RunStatus,
        TaskView,
        ToolCallResult,
        ToolInfo,
        Usage,
    )
    from ._sse import ServerSentEvent, SSEParser
    from ._sync import Client

__all__ = [
    "DEFAULT_URL",
    "AsyncClient",
    "Batch",
    "BatchItem",
    "Client",
    "PlanProblem",
    "PlanTask",
    "PlanValidation",
    "Retries",
    "Run",
    "RunStatus",
    "SSEParser",
    "ServerSentEvent",
    "ServiceConnectionError",
    "ServiceError",
    "ServiceNotFound",
    "ServiceRateLimited",
    "TaskView",
    "ToolCallResult",
    "ToolInfo",
    "Usage",
    "remote_app",
]

_HOMES = {
    "AsyncClient": "_async",
    "Client": "_sync",
    "DEFAULT_URL": "_base",
    "Retries": "_base",
    "SSEParser": "_sse",
    "ServerSentEvent": "_sse",
    **{
        name: "_models"
        for name in (
            "Batch", "BatchItem", "PlanProblem", "PlanTask", "PlanValidation", "Run", "RunStatus",
            "TaskView", "ToolCallResult", "ToolInfo", "Usage",
        )
    },
}  # fmt: skip


def __getattr__(name: str) -> typing.Any:
    home = _HOMES.get(name)
    if home is not None:
        import importlib

        value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
