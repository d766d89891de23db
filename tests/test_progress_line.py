"""The sweep's progress line (orchestrator/progress.py) on fake Tune trials."""

from __future__ import annotations

import io
from types import SimpleNamespace

from orchestrator.progress import ProgressLine, duration


class _Named(SimpleNamespace):
    def __str__(self) -> str:
        return self.trial_id


def test_counts_eta_best_and_last(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr("orchestrator.progress.time.monotonic", lambda: clock[0])
    out = io.StringIO()
    line = ProgressLine("demo", total=6, every_s=0.0, stream=out)
    trials = [
        _Named(trial_id=f"cnn-digits-P{p}-s0", status="PENDING", last_result={})
        for p in (1, 2, 3, 4, 5)
    ]
    for t in trials[:2]:
        t.status = "RUNNING"
        line.on_trial_start(0, trials, t)
    assert line.line(trials) == "[sweep demo] 1/6 done, 2 running"  # one finished before launch
    clock[0] = 60.0
    trials[0].status, trials[0].last_result = "TERMINATED", {"test_error": 0.2}
    line.on_trial_complete(0, trials, trials[0])
    clock[0] = 120.0
    trials[1].status, trials[1].last_result = "TERMINATED", {"test_error": 0.1}
    line.on_trial_complete(0, trials, trials[1])
    trials[2].status, trials[3].status = "RUNNING", "ERROR"
    # 3/6 done, 1 failed, 2 left at 1 running: 2 waves x mean(60 s, 120 s) = 3 min
    assert line.line(trials) == (
        "[sweep demo] 3/6 done, 1 running, 1 failed | ETA 3m00s"
        " | best cnn-digits-P2-s0 test_error=0.1 | last cnn-digits-P2-s0 test_error=0.1"
    )
    line.on_step_end(0, trials)
    line.on_experiment_end(trials)
    assert len(out.getvalue().splitlines()) == 2  # not a terminal: one line per change
    assert duration(59) == "59s" and duration(7322) == "2h02m"
