"""Durations, sizes and rates as the README writes them."""

from __future__ import annotations

import pytest

from exporter.config.values import (
    UnitError,
    format_duration,
    parse_duration,
    parse_rate,
    parse_size,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("10s", 10.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1.5s", 1.5),
        ("1m30s", 90.0),
        ("1h30m", 5400.0),
        ("250ms", 0.25),
    ],
)
def test_duration_units(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (10, "invalid duration 10: expected a number with a unit, e.g. 500ms, 10s, 5m, 1h"),
        ("10", "invalid duration '10': expected a number with a unit, e.g. 500ms, 10s, 5m, 1h"),
        ("1d", "invalid duration '1d': expected a number with a unit, e.g. 500ms, 10s, 5m, 1h"),
        ("10 s", "invalid duration '10 s': expected a number with a unit, e.g. 500ms, 10s, 5m, 1h"),
        ("-5s", "invalid duration '-5s': expected a number with a unit, e.g. 500ms, 10s, 5m, 1h"),
        ("", "invalid duration '': expected a number with a unit, e.g. 500ms, 10s, 5m, 1h"),
        (None, "invalid duration None: expected a number with a unit, e.g. 500ms, 10s, 5m, 1h"),
        ("٣s", "invalid duration '٣s': expected a number with a unit, e.g. 500ms, 10s, 5m, 1h"),
        ("0s", "invalid duration '0s': must be greater than zero"),
        ("0ms0s", "invalid duration '0ms0s': must be greater than zero"),
        ("9000h", "invalid duration '9000h': must be at most 365 days"),
    ],
)
def test_invalid_durations_say_what_is_expected(value: object, message: str) -> None:
    with pytest.raises(UnitError) as caught:
        parse_duration(value)
    assert str(caught.value) == message


def test_huge_numbers_are_errors_not_infinities() -> None:
    for parse in (parse_duration, parse_size, parse_rate):
        with pytest.raises(UnitError):
            parse("9" * 400 + "s")


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (65536, 65536),
        ("65536", 65536),
        ("64KiB", 65536),
        ("1MiB", 1024**2),
        ("2GiB", 2 * 1024**3),
        ("100B", 100),
        ("64 KiB", 65536),
    ],
)
def test_sizes_are_bytes_with_binary_suffixes(value: object, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("64KB", "invalid size '64KB': expected bytes, e.g. 65536, 64KiB, 1MiB"),
        ("64k", "invalid size '64k': expected bytes, e.g. 65536, 64KiB, 1MiB"),
        ("1.5MiB", "invalid size '1.5MiB': expected bytes, e.g. 65536, 64KiB, 1MiB"),
        (1.5, "invalid size 1.5: expected bytes, e.g. 65536, 64KiB, 1MiB"),
        (True, "invalid size True: expected bytes, e.g. 65536, 64KiB, 1MiB"),
        (0, "invalid size 0: must be greater than zero"),
        (-1, "invalid size -1: must be greater than zero"),
        ("2048GiB", "invalid size '2048GiB': must be at most 1TiB"),
    ],
)
def test_invalid_sizes_say_what_is_expected(value: object, message: str) -> None:
    with pytest.raises(UnitError) as caught:
        parse_size(value)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("value", "bytes_per_second"),
    [
        (25000, 25000.0),
        (1.5, 1.5),
        ("200kbit", 25000.0),
        ("1Mbit", 125000.0),
        ("1Gbit", 125e6),
        ("8bit", 1.0),
        ("50KB", 50000.0),
        ("2MB", 2e6),
        ("10B", 10.0),
        ("1Mbit/s", 125000.0),
        ("1Mbps", 125000.0),
        ("0.5Mbit", 62500.0),
    ],
)
def test_rates_are_decimal_bytes_per_second(value: object, bytes_per_second: float) -> None:
    assert parse_rate(value) == pytest.approx(bytes_per_second)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("200k", "invalid rate '200k': expected bytes per second, or e.g. 200kbit, 1Mbit, 50KB"),
        (
            "1 mbit",
            "invalid rate '1 mbit': expected bytes per second, or e.g. 200kbit, 1Mbit, 50KB",
        ),
        ("64KiB", "invalid rate '64KiB': expected bytes per second, or e.g. 200kbit, 1Mbit, 50KB"),
        (True, "invalid rate True: expected bytes per second, or e.g. 200kbit, 1Mbit, 50KB"),
        (float("nan"), "invalid rate nan: expected bytes per second, or e.g. 200kbit, 1Mbit, 50KB"),
        (float("inf"), "invalid rate inf: expected bytes per second, or e.g. 200kbit, 1Mbit, 50KB"),
        (0, "invalid rate 0: must be greater than zero"),
        ("0kbit", "invalid rate '0kbit': must be greater than zero"),
    ],
)
def test_invalid_rates_say_what_is_expected(value: object, message: str) -> None:
    with pytest.raises(UnitError) as caught:
        parse_rate(value)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.5, "500ms"), (1.0, "1s"), (10.0, "10s"), (60.0, "1m"), (90.0, "1m30s"),
     (3600.0, "1h"), (5400.0, "1h30m"), (0.0015, "1.5ms")],
)  # fmt: skip
def test_format_duration_is_the_inverse_of_parse(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)
