"""The sweep's live progress line (orchestrator/terminal.py says what each -v level prints).

It is rewritten in place on a terminal; written to a file or a pipe it is a new line only
when a trial ends and at most every `every_s` seconds, so a log of a long sweep stays short.
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from typing import Any, TextIO

from ray import tune

from common import names as N


def duration(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class ProgressLine(tune.Callback):
    """Driver-side Tune callback: `[sweep NAME] d/T done, r running, f failed | ETA ... |
    best NAME test_error=... | last NAME test_error=...`.

    ETA = mean duration of the trials finished in this session x the waves still to run at
    the current concurrency; none is given before a trial has finished.
    """

    def __init__(
        self, sweep: str, total: int, every_s: float = 30.0, stream: TextIO | None = None
    ) -> None:
        self.sweep = sweep
        self.total = total
        self.every_s = every_s
        self._stream = stream
        self._reset()

    def _reset(self) -> None:
        self._started: dict[str, float] = {}
        self._durations: list[float] = []
        self._best: tuple[float, str] | None = None
        self._last: str | None = None
        self._shown: tuple[int, int] | None = None
        self._t_shown = 0.0
        self._width = 0

    # Tune pickles callbacks into its experiment state: keep only the settings.
    def __getstate__(self) -> dict[str, Any]:
        return {"sweep": self.sweep, "total": self.total, "every_s": self.every_s}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _stream=None)
        self._reset()

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stderr

    # --- Tune hooks -----------------------------------------------------------------------
    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._started.setdefault(trial.trial_id, time.monotonic())

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        t0 = self._started.pop(trial.trial_id, None)
        if t0 is not None:
            self._durations.append(time.monotonic() - t0)
        err = (trial.last_result or {}).get(N.TEST_ERROR)
        name = str(trial)
        self._last = name if err is None else f"{name} test_error={err:.4g}"
        if err is not None and math.isfinite(err) and (self._best is None or err < self._best[0]):
            self._best = (err, f"{name} test_error={err:.4g}")

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self._show(trials, final=False)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._show(trials, final=True)

    # --- the line -------------------------------------------------------------------------
    def line(self, trials: list) -> str:
        # trials Tune does not hold (finished in MLflow before this launch) count as done
        done = sum(t.status == "TERMINATED" for t in trials) + max(self.total - len(trials), 0)
        running = sum(t.status == "RUNNING" for t in trials)
        failed = sum(t.status == "ERROR" for t in trials)
        parts = [f"[sweep {self.sweep}] {done}/{self.total} done, {running} running"]
        parts[0] += f", {failed} failed" if failed else ""
        left = self.total - done - failed
        if self._durations and left > 0:
            waves = math.ceil(left / max(running, 1))
            parts.append(f"ETA {duration(waves * sum(self._durations) / len(self._durations))}")
        if self._best is not None:
            parts.append(f"best {self._best[1]}")
        if self._last is not None:
            parts.append(f"last {self._last}")
        return " | ".join(parts)

    def _show(self, trials: list, final: bool) -> None:
        now = time.monotonic()
        text = self.line(trials)
        if self.stream.isatty():
            if final or now - self._t_shown >= 1.0:
                width = shutil.get_terminal_size().columns - 1
                text = text[:width]
                pad = " " * max(self._width - len(text), 0)
                self.stream.write("\r" + text + pad + ("\n" if final else ""))
                self.stream.flush()
                self._width, self._t_shown = len(text), now
            return
        state = (sum(t.status in ("TERMINATED", "ERROR") for t in trials), len(trials))
        changed = state != self._shown
        if final or (changed and (self._shown is None or now - self._t_shown >= self.every_s)):
            print(text, file=self.stream, flush=True)
            self._shown, self._t_shown = state, now
