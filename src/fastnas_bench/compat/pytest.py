"""pytest internals the plugin uses: the capture manager's suspension and a skip report's reason."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

READ_FROM = {"pytest": "9.2.0"}
RELIED_ON = (
    ("_pytest.capture", "CaptureManager.global_and_fixture_disabled"),
    ("_pytest.terminal", "TerminalReporter.ensure_newline"),
)


@contextlib.contextmanager
def capture_suspended(config: Any) -> Iterator[None]:
    """Output capture off (global and fixture) for the block, so a line reaches the terminal now."""
    capture = config.pluginmanager.get_plugin("capturemanager")
    if capture is None:
        yield
        return
    with capture.global_and_fixture_disabled():
        yield


def skip_reason(report: Any) -> str:
    """The reason of a skipped test's report (its ``longrepr`` is ``(path, line, "Skipped: reason")``)."""
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return str(text).removeprefix("Skipped: ")
