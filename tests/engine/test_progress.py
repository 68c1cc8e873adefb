"""Phase/progress reporting and the stop check."""

from __future__ import annotations

import pytest

from tests.engine.conftest import RecordingCallback
from workers.engine.progress import PHASE_SPANS, Progress
from workers.engine.spec import PHASES, EngineStopped


def test_spans_cover_zero_to_one_in_phase_order() -> None:
    assert tuple(PHASE_SPANS) == PHASES
    edges = [span for phase in PHASES for span in PHASE_SPANS[phase]]
    assert edges[0] == 0.0 and edges[-1] == 1.0
    assert edges == sorted(edges)


def test_progress_never_goes_back_and_is_throttled() -> None:
    callback = RecordingCallback()
    progress = Progress(callback)
    progress.start_phase("distilling")
    for i in range(10_000):
        progress.within(i / 10_000)
    progress.within(0.0)  # going back is ignored
    progress.start_phase("evaluating")
    progress.finish()
    values = callback.progress
    assert values == sorted(values)
    assert values[-1] == 1.0
    assert len(values) < 600  # 45% of the range at a 0.1% granularity, plus phase starts


def test_stop_is_checked_when_a_phase_starts() -> None:
    callback = RecordingCallback(stop_after_checks=0)
    with pytest.raises(EngineStopped):
        Progress(callback).start_phase("preparing")
    assert callback.phases == []
