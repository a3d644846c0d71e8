"""Latency measured on a device: a table per (space, device), read as the `latency` cost kind."""

from __future__ import annotations

from tamnas.latency.table import (
    LatencyTable,
    attach_latency,
    device_fingerprint,
    device_slug,
    load_table,
    with_latency,
)

__all__ = ["LatencyTable", "attach_latency", "device_fingerprint", "device_slug", "load_table",
           "with_latency"]
