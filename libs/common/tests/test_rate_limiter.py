"""The token bucket behind 429: bursts, steady rate, the wait it reports, keys apart."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bo_common.edge import RateLimited, RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_is_let_through_then_the_next_request_waits() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2, burst=3, clock=clock)
    for _ in range(3):
        limiter.acquire("k")

    with pytest.raises(RateLimited) as refused:
        limiter.acquire("k")
    assert refused.value.retry_after_s == pytest.approx(0.5)
    assert refused.value.retry_after_header == "1"


def test_tokens_come_back_at_the_rate_and_never_above_the_burst() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2, burst=3, clock=clock)
    for _ in range(3):
        limiter.acquire("k")
    clock.now += 0.5
    limiter.acquire("k")
    clock.now += 3600
    for _ in range(3):
        limiter.acquire("k")
    with pytest.raises(RateLimited):
        limiter.acquire("k")


def test_keys_have_buckets_of_their_own_and_a_key_may_have_its_own_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=1, burst=1, clock=clock)
    limiter.acquire("a")
    limiter.acquire("b")
    with pytest.raises(RateLimited):
        limiter.acquire("a")
    for _ in range(10):
        limiter.acquire("fast", rate=100, burst=10)


@given(
    rate=st.floats(min_value=0.1, max_value=1000),
    burst=st.integers(min_value=1, max_value=50),
    gaps=st.lists(st.floats(min_value=0, max_value=2), min_size=1, max_size=200),
)
def test_over_any_window_no_more_than_burst_plus_rate_times_time_pass(
    rate: float, burst: int, gaps: list[float]
) -> None:
    clock = Clock()
    limiter = RateLimiter(rate=rate, burst=burst, clock=clock)
    start = clock.now
    passed = 0
    for gap in gaps:
        clock.now += gap
        try:
            limiter.acquire("k")
            passed += 1
        except RateLimited as error:
            assert error.retry_after_s > 0
    assert passed <= burst + rate * (clock.now - start) + 1e-6
