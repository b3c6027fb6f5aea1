"""Where a search's latencies come from: its target device key, the table of that key, and the latency constraint.

A search whose space has a ``latency`` objective or a ``constraints.max_latency_ms`` has a target
device key. Without ``--latency-table``, it is the key of the space's ``latency:`` settings on the
machine the driver runs on, and the table is that key's table in the cache folder: what it lacks
is measured there, at sampling time, under the device's lock. With a table, the table's own key is
the target: ``latency:`` fields the space sets must agree with it (else a user error naming the
mismatch), and a spec it lacks is measured only where this machine is that device; elsewhere such
a candidate is rejected, never trained. A continued study keeps the target it was started with.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rksearch.arch.resolve import AnySpec
from rksearch.core.errors import RKSearchError
from rksearch.space.search_space import SearchSpace
from rksearch.training.latency import DeviceKey, Protocol, Settings, device_key
from rksearch.training.latency_table import LatencyTable, latency_of

LATENCY_FIELDS = ("device", "batch", "precision", "threads", "channels_last")


def settings_of(space: SearchSpace) -> Settings:
    lat = space.latency
    return Settings(lat.device, lat.batch, lat.precision, lat.threads, lat.channels_last)


@dataclass(frozen=True)
class SearchLatency:
    """A search's latencies: the target key's table, whether this machine can add to it, the bound."""

    table: LatencyTable
    measurable: bool
    max_ms: float | None
    given: bool  # the table was given (--latency-table), not the cache's table of this machine
    protocol: Protocol = Protocol()

    @property
    def key(self) -> DeviceKey:
        return self.table.key

    def latency_ms(self, spec: AnySpec) -> float | None:
        """The median latency of ``spec`` on the target; None where the table lacks it and this
        machine is not the target device."""
        if not self.measurable:
            found = self.table.get(spec)
            return None if found is None else found.median_ms
        return latency_of(self.table, spec, self.protocol)[0].median_ms

    def lacking(self) -> str:
        """Why a spec has no latency (the table lacks it, and this machine cannot measure it)."""
        return f"no latency for it in {self.table.path.name} ({self.key.text()}), and this machine is not that device"

    def violation(self, ms: float) -> float | None:
        """Optuna's constraint value (<= 0: met); None without a bound."""
        return None if self.max_ms is None else ms / self.max_ms - 1

    def notice(self) -> str:
        where = "" if self.measurable else "; specs it lacks are rejected (this machine is not that device)"
        return f"latency: {self.key.text()}, table {self.table.path}{where}"


def search_latency(space: SearchSpace, table: str | Path | None = None, *,
                   field: str = "--latency-table") -> SearchLatency | None:
    """The search's latency source (None where the space neither optimises nor bounds latency),
    checked before anything is written."""
    if not space.needs_latency:
        if table is not None:
            raise RKSearchError("the space has no latency objective and no constraints.max_latency_ms",
                                field=field)
        return None
    max_ms = space.constraints.max_latency_ms
    if table is None:
        try:
            key = device_key(settings_of(space), field="latency.device")
        except RKSearchError as e:
            raise RKSearchError(e.message, source=space.source, field=e.field) from None
        return SearchLatency(LatencyTable.for_key(key), True, max_ms, False)
    given = LatencyTable.read(table, field=field)
    asked = settings_of(space)
    for name in sorted(space.latency.model_fields_set):
        want, have = getattr(asked, name), getattr(given.key, name, None)
        if want is None or (name == "device" and want == "auto"):
            continue
        if want != have:
            raise RKSearchError(f"the table {given.path.name} holds latencies at {name} {have!r}, the space's "
                                f"latency.{name} is {want!r} ({given.key.text()})", field=field)
    return SearchLatency(given, given.measurable_here(), max_ms, True)


def check_same_target(recorded: str | None, latency: SearchLatency | None, space: SearchSpace) -> None:
    """A continued study measures latency on the key it started with: its latencies share a front."""
    if recorded is None or latency is None or recorded == latency.key.text():
        return
    raise RKSearchError(f"study {space.name} measured latency on {recorded}, this run on {latency.key.text()}; "
                        "give --latency-table with that device's table, start over with --fresh, or give the "
                        "space another name", source=space.source, field="latency")
