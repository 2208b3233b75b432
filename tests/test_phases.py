"""`streams.metrics.Phases`: each phase's wall time lands in longtide_<kind>_phase_seconds_total."""

from __future__ import annotations

import time

import pytest
from prometheus_client import REGISTRY

from streams.metrics import Phases


def _seconds(actor: str, phase: str) -> float:
    return REGISTRY.get_sample_value("longtide_phasetest_phase_seconds_total", {"actor": actor, "phase": phase}) or 0.0


def test_phases_add_up_their_wall_time_nested_or_raising() -> None:
    phases = Phases("phasetest", "a-0")
    with phases("handle"):
        time.sleep(0.02)
        with phases("generate"):
            time.sleep(0.03)
    with pytest.raises(RuntimeError), phases("handle"):
        time.sleep(0.01)
        raise RuntimeError("counted all the same")
    assert 0.03 <= _seconds("a-0", "generate") < 0.2
    assert _seconds("a-0", "handle") >= _seconds("a-0", "generate") + 0.03
    assert _seconds("b-0", "handle") == 0.0, "per actor"
