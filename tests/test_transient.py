"""Which errors are worth another try, and the backoff between tries (no broker, no sleep)."""

from __future__ import annotations

import pytest

from streams.transient import StillFailing, Transient, is_transient, retrying

pytestmark = pytest.mark.unit


class OutOfMemoryError(RuntimeError):
    """Named as torch's is: told apart by name, without importing torch."""


def test_timeouts_connections_s3_and_out_of_memory_are_transient_the_rest_permanent() -> None:
    for exc in (
        TimeoutError(),
        ConnectionResetError(),
        OSError("AWS Error SLOW_DOWN"),
        OutOfMemoryError(),
        Transient(),
    ):
        assert is_transient(exc), exc
    for exc in (FileNotFoundError(), PermissionError(), KeyError("blob gone"), ValueError(), RuntimeError()):
        assert not is_transient(exc), exc


def test_retrying_backs_off_doubling_and_gives_up_after_its_attempts(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr("streams.transient.time.sleep", waits.append)
    calls = iter([TimeoutError("1"), TimeoutError("2"), "done"])

    def flaky() -> str:
        outcome = next(calls)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    seen: list[BaseException] = []
    assert retrying(flaky, attempts=3, first_delay_s=0.5, on_retry=seen.append) == "done"
    assert waits == [0.5, 1.0] and len(seen) == 2
    with pytest.raises(StillFailing, match="TimeoutError: always .still failing after 2 retries"):
        retrying(lambda: (_ for _ in ()).throw(TimeoutError("always")), attempts=2, first_delay_s=0.1)
    assert waits[2:] == [0.1, 0.2]
    with pytest.raises(ValueError):  # permanent: no retry, no wait
        retrying(lambda: (_ for _ in ()).throw(ValueError("bad")), attempts=5)
    assert len(waits) == 4
