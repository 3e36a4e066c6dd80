"""Hypothesis profiles, chosen by ``CLOCKWORK_HYPOTHESIS_PROFILE``.

``dev`` (the default) draws new examples on every run: that is how the property tests keep
finding rare cases, and a developer's ``make test`` should. ``ci`` derandomizes them, so CI runs
exactly the examples every clean-clone check before it ran, and a landing is never refused for an
example nobody has seen (it happened once: see tests/sim/test_settled_polls.py). ``.ci/run``
selects ``ci``."""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("dev", print_blob=True)
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("CLOCKWORK_HYPOTHESIS_PROFILE", "dev"))

# servers started by the tests (in this process or as children, which inherit the environment)
# keep their state, e.g. the recent-models order, in a directory of this run, never in $HOME
if "CLOCKWORK_TESTS_KEEP_STATE_HOME" not in os.environ:
    import atexit
    import shutil
    import tempfile

    os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="clockwork-test-state-")
    atexit.register(shutil.rmtree, os.environ["XDG_STATE_HOME"], True)
