"""A trial's status strings, defined once (trainers return them; run.py and the orchestrator
compare against them)."""

STATUS_RUNNING = "running"
STATUS_COMPLETED = "completed"
STATUS_DIVERGED = "diverged"  # a NaN/inf loss stopped the trial; records so far are kept
