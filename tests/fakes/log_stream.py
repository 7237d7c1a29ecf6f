"""A stream for powertools' log handler that writes to whatever ``sys.stdout`` is at the time of writing."""

from __future__ import annotations

import sys


class CurrentStdout:
    """powertools binds its handler to the stdout of import time; this follows pytest's capsys into every test."""

    def write(self, text: str) -> int:
        """Write to the current stdout."""
        return sys.stdout.write(text)

    def flush(self) -> None:
        """Flush the current stdout."""
        sys.stdout.flush()
