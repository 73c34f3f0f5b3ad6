"""When a cron expression fires, in a time zone, across daylight-saving changes.

The expression is read in the zone's wall-clock time, and a change of the clock is met as Vixie cron meets it:

- A fixed-time expression (neither its minute nor its hour field has a `*`, as `30 2 * * *`) fires once for
  each wall-clock time it names. A time the clock skips (02:30 when it jumps from 02:00 to 03:00) fires at the
  first instant after the jump (03:00); a time the clock passes twice (02:30 when it goes back from 03:00 to
  02:00) fires the first time only.
- An expression with a `*` in its minute or hour field (`*/15 * * * *`, `0 * * * *`) follows the clock as it
  goes: what it names in a skipped hour does not fire, and what it names in a repeated hour fires both times.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

LOOKBACK = timedelta(hours=3)
"""More than any zone's clock ever moves at once: a wall-clock time this far before another is also earlier in
real time, whatever changes lie between."""


class InvalidTimeZoneError(ValueError):
    pass


def time_zone(name: str) -> ZoneInfo:
    """The IANA time zone `name` ("Europe/Berlin", "UTC"); `InvalidTimeZoneError` naming it otherwise."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidTimeZoneError(f"unknown time zone {name!r}: give an IANA name such as 'Europe/Berlin'") from exc


def fire_times(expression: str, zone: ZoneInfo, after: datetime) -> Iterator[datetime]:
    """The instants (UTC) the expression fires at, in order, from the first one after `after`."""
    fixed_time = _is_fixed_time(expression)
    start = after.astimezone(zone).replace(tzinfo=None) - LOOKBACK
    wall_times = croniter(expression, start)
    pending: list[datetime] = []
    while True:
        try:
            wall_time: datetime = wall_times.get_next(datetime)
        except CroniterBadDateError:  # the expression names no further date
            yield from sorted(pending)
            return
        # Instants of earlier wall times are all out once this one is far enough past them.
        horizon = (wall_time - LOOKBACK).replace(tzinfo=zone).astimezone(UTC)
        pending.sort()
        while pending and pending[0] < horizon:
            yield pending.pop(0)
        for instant in _instants(wall_time, zone, fixed_time):
            if instant > after and instant not in pending:
                pending.append(instant)


def next_fire_times(expression: str, zone: ZoneInfo, after: datetime, count: int) -> list[datetime]:
    times: list[datetime] = []
    for instant in fire_times(expression, zone, after):
        times.append(instant)
        if len(times) == count:
            break
    return times


def next_fire_time(expression: str, zone: ZoneInfo, after: datetime) -> datetime | None:
    """The first fire time after `after`; None when the expression names no further date."""
    return next(fire_times(expression, zone, after), None)


def _is_fixed_time(expression: str) -> bool:
    minute, hour = expression.split()[:2]
    return "*" not in minute and "*" not in hour


def _instants(wall_time: datetime, zone: ZoneInfo, fixed_time: bool) -> list[datetime]:
    """The instants (UTC) a wall-clock time of the zone fires at."""
    first = wall_time.replace(tzinfo=zone, fold=0)
    second = wall_time.replace(tzinfo=zone, fold=1)
    if first.utcoffset() == second.utcoffset():
        return [first.astimezone(UTC)]
    exists = first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == wall_time
    if exists:  # passed twice: first (fold 0) before the clock goes back, then after
        return [first.astimezone(UTC)] if fixed_time else [first.astimezone(UTC), second.astimezone(UTC)]
    if not fixed_time:
        return []
    # Skipped by the clock: fold 1 reads it with the offset after the jump, fold 0 with the one before; the jump
    # lies between the two.
    return [_jump(second.astimezone(UTC), first.astimezone(UTC), zone)]


def _jump(earliest: datetime, latest: datetime, zone: ZoneInfo) -> datetime:
    """The instant between `earliest` and `latest` at which the zone's offset changes."""
    before = earliest.astimezone(zone).utcoffset()
    low, high = int(earliest.timestamp()), int(latest.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).utcoffset() == before:
            low = middle
        else:
            high = middle
    return datetime.fromtimestamp(high, UTC)
