"""The sweep presets: `python -m orchestrator.sweep --config NAME` reads NAME.yaml from here.

They live inside the package (read with importlib.resources, orchestrator/config.py) so that
a wheel install (`pip install .`, not editable) has them too; each file says what it runs.
"""
