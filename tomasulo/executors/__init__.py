"""Executors run tool calls: on this process (:class:`LocalExecutor`), on worker processes
(:class:`ProcessExecutor`) or on a Ray cluster (:class:`RayExecutor`, extra ``tomasulo[ray]``)."""

from ._base import BaseExecutor, Executor, check_output, prepare_kwargs
from ._local import DEFAULT_MAX_THREADS, LocalExecutor
from ._process import ProcessExecutor
from ._ray import RayExecutor
from ._threads import raised_on_thread

__all__ = [
    "DEFAULT_MAX_THREADS",
    "BaseExecutor",
    "Executor",
    "LocalExecutor",
    "ProcessExecutor",
    "RayExecutor",
    "check_output",
    "prepare_kwargs",
    "raised_on_thread",
]
