"""When a cron expression fires in a time zone, across daylight-saving changes, as docs/schedules.md promises."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bifrost.metadata import cron_problem
from control_plane.schedules.cron import InvalidTimeZoneError, next_fire_times, time_zone


def local_times(expression: str, zone_name: str, after: datetime, count: int) -> list[str]:
    """The fire times as wall-clock times with the zone's abbreviation, as a reader of the zone's clock sees them."""
    zone = time_zone(zone_name)
    return [
        moment.astimezone(zone).strftime("%m-%d %H:%M %Z")
        for moment in next_fire_times(expression, zone, after.astimezone(UTC), count)
    ]


def on_day(expression: str, zone_name: str, day: datetime) -> list[str]:
    """The fire times within the zone's calendar day `day`."""
    zone = time_zone(zone_name)
    start = day.replace(tzinfo=zone) - timedelta(microseconds=1)
    end = (day + timedelta(days=1)).replace(tzinfo=zone)
    times = next_fire_times(expression, zone, start.astimezone(UTC), 200)
    return [moment.astimezone(zone).strftime("%H:%M %Z") for moment in times if moment < end.astimezone(UTC)]


@pytest.mark.parametrize(
    ("zone", "skipped_day", "repeated_day", "skipped_time", "repeated_time"),
    [
        # Europe/Berlin: 02:00 CET becomes 03:00 CEST; 03:00 CEST becomes 02:00 CET.
        ("Europe/Berlin", datetime(2025, 3, 30), datetime(2025, 10, 26), "30 2 * * *", "30 2 * * *"),
        # America/New_York: 02:00 EST becomes 03:00 EDT; 02:00 EDT becomes 01:00 EST.
        ("America/New_York", datetime(2025, 3, 9), datetime(2025, 11, 2), "30 2 * * *", "30 1 * * *"),
    ],
)
def test_a_daily_time_runs_once_on_both_days_the_clock_changes(
    zone: str,
    skipped_day: datetime,
    repeated_day: datetime,
    skipped_time: str,
    repeated_time: str,
) -> None:
    skipped = on_day(skipped_time, zone, skipped_day)
    assert len(skipped) == 1, skipped
    # The clock never shows 02:30 that night: the run comes at the first instant after the jump.
    assert skipped[0].startswith("03:00 ")
    repeated = on_day(repeated_time, zone, repeated_day)
    assert len(repeated) == 1, repeated
    # The first of the two times the clock shows it, on summer time.
    assert repeated[0][:5] == repeated_time.split()[1].zfill(2) + ":30"
    assert repeated[0].endswith(("CEST", "EDT"))


def test_the_days_around_the_changes_keep_their_times() -> None:
    assert local_times("30 2 * * *", "Europe/Berlin", datetime(2025, 3, 28, 12, tzinfo=UTC), 4) == [
        "03-29 02:30 CET",
        "03-30 03:00 CEST",
        "03-31 02:30 CEST",
        "04-01 02:30 CEST",
    ]
    assert local_times("30 2 * * *", "Europe/Berlin", datetime(2025, 10, 25, 12, tzinfo=UTC), 3) == [
        "10-26 02:30 CEST",
        "10-27 02:30 CET",
        "10-28 02:30 CET",
    ]


def test_an_expression_with_a_star_in_its_hour_follows_the_clock() -> None:
    # Every 30 minutes stays every 30 minutes of real time through both changes: nothing in the skipped hour, and
    # the repeated hour's times twice.
    spring = local_times("*/30 * * * *", "Europe/Berlin", datetime(2025, 3, 30, 0, 0, tzinfo=UTC), 4)
    assert spring == ["03-30 01:30 CET", "03-30 03:00 CEST", "03-30 03:30 CEST", "03-30 04:00 CEST"]
    autumn = local_times("*/30 * * * *", "Europe/Berlin", datetime(2025, 10, 25, 23, 59, tzinfo=UTC), 6)
    assert autumn == [
        "10-26 02:00 CEST",
        "10-26 02:30 CEST",
        "10-26 02:00 CET",
        "10-26 02:30 CET",
        "10-26 03:00 CET",
        "10-26 03:30 CET",
    ]
    # A fixed minute in a star hour: the skipped 02:15 does not run, the repeated one runs twice.
    assert len(on_day("15 * * * *", "Europe/Berlin", datetime(2025, 3, 30))) == 23
    assert len(on_day("15 * * * *", "Europe/Berlin", datetime(2025, 10, 26))) == 25


def test_a_clock_that_moves_half_an_hour() -> None:
    # Australia/Lord_Howe goes from +10:30 to +11 at 02:00, which becomes 02:30.
    assert local_times("0 2 * * *", "Australia/Lord_Howe", datetime(2025, 10, 3, 12, tzinfo=UTC), 3) == [
        "10-04 02:00 +1030",
        "10-05 02:30 +11",
        "10-06 02:00 +11",
    ]


def test_fire_times_in_utc_and_weekdays() -> None:
    assert local_times("0 9 * * 1-5", "UTC", datetime(2025, 1, 3, 10, tzinfo=UTC), 3) == [
        "01-06 09:00 UTC",
        "01-07 09:00 UTC",
        "01-08 09:00 UTC",
    ]


def test_an_expression_without_a_date_that_exists_has_no_fire_times() -> None:
    assert next_fire_times("0 0 30 2 *", time_zone("UTC"), datetime(2025, 1, 1, tzinfo=UTC), 5) == []


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("every morning", "not a valid cron expression; expected five fields"),
        ("* * * * * *", "not a valid cron expression; expected five fields"),
        ("@hourly", "not a valid cron expression; expected five fields"),
        ("61 * * * *", "not a valid cron expression; expected five fields"),
        ("0 0 30 2 *", "names no date that exists"),
    ],
)
def test_what_is_not_a_cron_expression_is_told(expression: str, problem: str) -> None:
    found = cron_problem(expression)
    assert found is not None
    assert problem in found


def test_an_unknown_time_zone_is_named() -> None:
    with pytest.raises(InvalidTimeZoneError, match="unknown time zone 'Mars/Olympus'"):
        time_zone("Mars/Olympus")
    with pytest.raises(InvalidTimeZoneError, match=r"unknown time zone '\.\./etc'"):
        time_zone("../etc")
