"""The dedupe key of API.md A.6, the retry backoff of B.2 and the documented defaults."""

from __future__ import annotations

import hashlib
import random

import pytest

from taskmanager.engine.policy import (
    DEFAULT_CLAIM_TIMEOUT,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_RETRY_DELAY,
    DEFAULT_RETRY_MAX_DELAY,
    RETRY_JITTER,
    Defaults,
    RetryPolicy,
    compute_dedupe_key,
)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# -- dedupe key ------------------------------------------------------------------------------------


def test_dedupe_key_matches_the_example_in_the_api_contract() -> None:
    params = {"topic": "AI in Healthcare", "style": "formal", "length": 1500}
    assert (
        compute_dedupe_key("PrismQ.Script.Generate", params)
        == "44ff8188369983e6a8010c424790a4e9326c3db1f84539bfcb356b8927316d71"
    )


def test_dedupe_key_hashes_type_name_nul_and_compact_json() -> None:
    params = {"a": [1, 2, {"b": None}], "c": True, "d": 1.5}
    expected = sha256_hex('T.x\0{"a":[1,2,{"b":null}],"c":true,"d":1.5}')
    assert compute_dedupe_key("T.x", params) == expected


def test_dedupe_key_of_empty_params() -> None:
    assert compute_dedupe_key("T", {}) == sha256_hex("T\0{}")


def test_dedupe_key_does_not_escape_non_ascii() -> None:
    params = {"topic": "Zdraví a AI", "emoji": "🤖", "名前": "東京"}
    raw = 'T\0{"topic":"Zdraví a AI","emoji":"🤖","名前":"東京"}'
    assert compute_dedupe_key("T", params) == sha256_hex(raw)
    escaped = 'T\0{"topic":"Zdrav\\u00ed a AI","emoji":"\\ud83e\\udd16","\\u540d\\u524d":"\\u6771\\u4eac"}'
    assert compute_dedupe_key("T", params) != sha256_hex(escaped)


def test_dedupe_key_keeps_key_order_as_received() -> None:
    first = compute_dedupe_key("T", {"a": 1, "b": 2})
    second = compute_dedupe_key("T", {"b": 2, "a": 1})
    assert first == sha256_hex('T\0{"a":1,"b":2}')
    assert second == sha256_hex('T\0{"b":2,"a":1}')
    assert first != second


def test_dedupe_key_depends_on_the_type_name() -> None:
    assert compute_dedupe_key("A", {"x": 1}) != compute_dedupe_key("B", {"x": 1})


# -- retry backoff ---------------------------------------------------------------------------------


def test_backoff_doubles_with_each_attempt() -> None:
    policy = RetryPolicy(delay=2.0, max_delay=3600.0, jitter=0.0)
    rng = random.Random(1)
    assert [policy.backoff(n, rng) for n in (1, 2, 3, 4, 5)] == [2.0, 4.0, 8.0, 16.0, 32.0]


def test_backoff_before_any_attempt_is_the_base_delay() -> None:
    assert RetryPolicy(delay=5.0, jitter=0.0).backoff(0, random.Random(1)) == 5.0


def test_backoff_is_capped_at_max_delay() -> None:
    policy = RetryPolicy(delay=2.0, max_delay=10.0, jitter=0.0)
    rng = random.Random(1)
    assert [policy.backoff(n, rng) for n in (3, 4, 5, 50)] == [8.0, 10.0, 10.0, 10.0]


def test_backoff_of_a_huge_attempt_count_does_not_overflow() -> None:
    policy = RetryPolicy(delay=2.0, max_delay=3600.0, jitter=0.0)
    assert policy.backoff(10_000, random.Random(1)) == 3600.0


@pytest.mark.parametrize("attempts", [1, 2, 3, 6, 20])
def test_backoff_jitter_stays_within_ten_percent(attempts: int) -> None:
    policy = RetryPolicy(delay=2.0, max_delay=60.0)
    base = min(60.0, 2.0 * 2 ** (attempts - 1))
    rng = random.Random(42)
    delays = [policy.backoff(attempts, rng) for _ in range(2000)]
    assert all(base * 0.9 <= d <= base * 1.1 for d in delays)
    # The jitter really spreads the delays, on both sides of the base.
    assert min(delays) < base * 0.95
    assert max(delays) > base * 1.05


def test_backoff_jitter_is_reproducible_with_a_seeded_random() -> None:
    policy = RetryPolicy(delay=2.0)
    first = [policy.backoff(n, random.Random(7)) for n in range(1, 6)]
    second = [policy.backoff(n, random.Random(7)) for n in range(1, 6)]
    assert first == second
    assert first != [policy.backoff(n, random.Random(8)) for n in range(1, 6)]


@pytest.mark.parametrize("attempts", [0, 1, 2, 10])
def test_backoff_with_zero_delay_retries_at_once(attempts: int) -> None:
    policy = RetryPolicy(delay=0.0, max_delay=3600.0)
    assert policy.backoff(attempts, random.Random(3)) == 0.0


def test_retry_policy_defaults() -> None:
    policy = RetryPolicy()
    assert (policy.delay, policy.max_delay, policy.jitter) == (2.0, 3600.0, 0.10)
    assert RETRY_JITTER == 0.10


def test_server_defaults_match_the_settings_table() -> None:
    defaults = Defaults()
    assert defaults.max_attempts == DEFAULT_MAX_ATTEMPTS == 3
    assert defaults.claim_timeout == DEFAULT_CLAIM_TIMEOUT == 300
    assert defaults.retry_delay == DEFAULT_RETRY_DELAY == 2.0
    assert defaults.retry_max_delay == DEFAULT_RETRY_MAX_DELAY == 3600.0
    assert defaults.enable_history is True
    assert defaults.enable_schema_validation is True
