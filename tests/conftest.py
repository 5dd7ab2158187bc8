import os

from hypothesis import settings

pytest_plugins = ["tests.servers"]

# In CI the property tests draw the same examples on every run (derandomize), so a failure seen
# there reproduces on a laptop with `CI=1 pytest tests/test_windows.py`; locally they explore.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
