"""Hypothesis budgets: small in the quick tier, the full ones in CI.

Two profiles are registered (``tests/conftest.py`` imports this module before any test module):

* ``quick`` (the default): 20 examples per test unless the test asks for more, scaled down with it;
* ``full``: Hypothesis' own default of 100, and each test's budget as written.

Pick one with ``pytest --hypothesis-profile=full`` (or ``HYPOTHESIS_PROFILE=full``). A test that needs
more than the default writes its full budget through :func:`examples`, which scales it with the
loaded profile, so the quick tier runs every property test on a fifth of its examples.
"""

from __future__ import annotations

import os

from hypothesis import settings

FULL_EXAMPLES = 100  # Hypothesis' default; the budgets in the tests are written against it
MIN_EXAMPLES = 10

settings.register_profile("full", max_examples=FULL_EXAMPLES, deadline=None)
settings.register_profile("quick", max_examples=20, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "quick"))


def examples(full: int) -> int:
    """Return ``full`` scaled to the loaded profile (``full`` itself in the ``full`` profile)."""
    return max(min(full, MIN_EXAMPLES), full * settings.default.max_examples // FULL_EXAMPLES)
