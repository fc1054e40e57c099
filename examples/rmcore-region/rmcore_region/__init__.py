"""rmcore plugins for organisations that work by region.

- ``region`` (rmcore_region.matching): a matching strategy that pairs people only
  within their region, and the ``rmcore regions`` command;
- ``region_kpis`` (rmcore_region.kpis): how many pairs stay within one region;
- ``region_webhook`` (rmcore_region.webhook): posts each new event as JSON to a URL.

A person's region comes from their time zone: the ``region.map`` setting maps a time
zone (``Europe/London``) or its area (``Europe``) to a region name; without an entry,
the area is the region. ``UTC`` and ``Etc/...`` name no region.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ENABLED = "region.enabled"
MAP = "region.map"


def enabled(config: Mapping[str, Any]) -> bool:
    """Whether the program turned region matching and KPIs on (``region.enabled``)."""
    value = config.get(ENABLED, False)
    if not isinstance(value, bool):
        raise ValueError(f"{ENABLED} must be true or false, not {value!r}")
    return value


def region_of(timezone: str, config: Mapping[str, Any]) -> str | None:
    """The region of a time zone: ``region.map`` of the zone or its area, else the area."""
    mapping = config.get(MAP, {})
    if not isinstance(mapping, Mapping):
        raise ValueError(f'{MAP} must map time zones or areas to regions: {{"Europe": "EMEA"}}')
    area = timezone.split("/", 1)[0] if "/" in timezone else None
    region = mapping.get(timezone) or mapping.get(area)
    if region is None and area != "Etc":
        region = area
    return region
