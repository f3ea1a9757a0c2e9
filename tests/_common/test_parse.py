"""Parsers of typed numbers."""

from __future__ import annotations

import pytest

from nas._common.parse import parse_latency
from nas.errors import NasError


def test_latencies_are_read_with_their_unit():
    assert parse_latency("20ms") == pytest.approx(0.02)
    assert parse_latency(" 0.02 s") == pytest.approx(0.02)
    assert parse_latency("20000us") == pytest.approx(0.02)
    assert parse_latency("2.5e1MS") == pytest.approx(0.025)


@pytest.mark.parametrize("text", ["20", "ms", "-3ms", "0ms", "20 min", "1e400s"])
def test_a_latency_without_a_unit_or_positive_value_is_refused(text):
    with pytest.raises(NasError, match="--target-latency"):
        parse_latency(text)
