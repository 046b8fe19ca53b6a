"""Tools for the flaky-tool example: one that fails a few times before it works, one that is down.

Loaded by ``flaky.yaml`` as ``flaky_tools:toolset`` (the workflow's folder is on the import path).
"""

from __future__ import annotations

from collections import Counter

from tomasulo.tools import Toolset, tool

_calls: Counter[str] = Counter()


@tool(idempotent=True)
def fetch_report(region: str, fail_times: int = 2) -> dict[str, object]:
    """Fetch a sales report; fails `fail_times` times per region before it answers.

    Args:
        region: which region's report.
        fail_times: how many calls fail first.
    """
    _calls[region] += 1
    if _calls[region] <= fail_times:
        raise ConnectionError(f"report service busy (call {_calls[region]} for {region})")
    return {"region": region, "sales": 1000 + 10 * len(region)}


@tool
def legacy_lookup(region: str) -> dict[str, object]:
    """Look a region up in the legacy system, which is down.

    Args:
        region: which region.
    """
    raise RuntimeError(f"legacy system is down (asked for {region})")


toolset = Toolset([fetch_report, legacy_lookup])
