"""Device reporting: exports on demand and a daily summary."""

import csv
import io
import logging
from datetime import date, datetime
from typing import Literal

from bifrost import ExecutionContext, workflow

logger = logging.getLogger(__name__)

_DEVICES = [
    {"name": "north-fw-01", "site": "north", "os": "FortiOS", "last_seen": "2026-11-30"},
    {"name": "north-ws-17", "site": "north", "os": "Windows 11", "last_seen": "2026-11-02"},
    {"name": "south-sw-03", "site": "south", "os": "IOS-XE", "last_seen": "2026-11-29"},
]


@workflow(
    name="export_devices_csv",
    execution_mode="sync",
    category="Reporting",
    timeout_seconds=600,
    endpoint_enabled=True,
    tags=["ninjaone"],
)
def export(context: ExecutionContext, site: Literal["north", "south"], since: date | None = None) -> dict[str, str]:
    """Export the devices of a site as CSV.

    Args:
        site: Which site's devices to export.
        since: Only devices seen on or after this day.
    """
    rows = [
        device
        for device in _DEVICES
        if device["site"] == site and (since is None or date.fromisoformat(device["last_seen"]) >= since)
    ]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["name", "site", "os", "last_seen"])
    writer.writeheader()
    writer.writerows(rows)
    return {"filename": f"devices-{site}.csv", "csv": out.getvalue()}


@workflow(category="Reporting", schedule="0 9 * * 1-5", tags=["ninjaone"])
async def daily_device_summary(stale_after_days: int = 14) -> dict[str, object]:
    """Count devices per site and flag those not seen for a while; runs every weekday at 09:00.

    Args:
        stale_after_days: A device not seen for this many days is stale.
    """
    today = datetime.now().date()
    summary: dict[str, dict[str, int]] = {}
    for device in _DEVICES:
        site = summary.setdefault(device["site"], {"devices": 0, "stale": 0})
        site["devices"] += 1
        if (today - date.fromisoformat(device["last_seen"])).days > stale_after_days:
            site["stale"] += 1
    logger.info("summary: %s", summary)
    return {"sites": summary}
