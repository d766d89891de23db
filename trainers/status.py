"""A trial's status strings and stop reasons, defined once (trainers return and record them;
run.py and the orchestrator compare against them).

Every trainer puts a stop reason on the last record of each curve (common.names.STOP_REASON,
the one string in an otherwise all-float record), and the orchestrator copies it to a tag of
the trial's MLflow run. A reason is "<code>: <detail>", the code one of STOP_CODES, so that a
reader can tell how a trial ended without parsing the detail.
"""

STATUS_RUNNING = "running"
STATUS_COMPLETED = "completed"
STATUS_DIVERGED = "diverged"  # a NaN/inf loss stopped the trial; records so far are kept

STOP_BUDGET = "budget"  # the epoch budget (perceptron: gradient evaluations) is used up
STOP_LAMBDA = "lambda_stop"  # perceptron: lambda = |w|/sqrt(N) passed lambda_stop
# perceptron: every per-example loss derivative fell below float32's smallest normal number
# (the max-stability limit of separable data, Section 2): the gradient has no precision left
STOP_RESOLUTION = "float_resolution"
STOP_DIVERGED = "diverged"  # non-finite weights or loss; the last finite state is kept
STOP_CODES = (STOP_BUDGET, STOP_LAMBDA, STOP_RESOLUTION, STOP_DIVERGED)


def stop_reason(code: str, detail: str) -> str:
    """The recorded reason, e.g. 'float_resolution: gradient below float resolution at
    lambda 227'."""
    if code not in STOP_CODES:
        raise ValueError(f"stop code: {code!r} is not one of {STOP_CODES}")
    return f"{code}: {detail}"


def stop_code(reason: str) -> str:
    """The code of a recorded reason (the inverse of stop_reason's prefix)."""
    code = reason.split(":", 1)[0]
    if code not in STOP_CODES:
        raise ValueError(f"stop reason: {reason!r} does not start with one of {STOP_CODES}")
    return code
