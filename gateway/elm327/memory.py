"""Protocol memory: the last protocol that worked, in a small JSON file, so a restart does not search.

A search over the ELM327's protocols takes seconds of requests on the bus (7 s against the simulator);
starting from the remembered protocol (ATSPA<p>) answers at once on the same car.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from gateway.common.ratelog import RateLimitedLog

log = logging.getLogger("gateway.elm327")
_errors = RateLimitedLog(log)  # a read-only state directory fails every remember(): one line, then a count


class ProtocolMemory:
    """Reads and writes ``{"protocol": "6"}`` (and future keys) atomically; no file, no memory."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def load(self) -> dict[str, Any]:
        """The remembered values ({} when there is no readable file)."""
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    @property
    def protocol(self) -> str:
        """The remembered protocol number, '' when none."""
        value = self.load().get("protocol", "")
        return value if isinstance(value, str) else ""

    def remember(self, **changes: Any) -> None:
        """Merge ``changes`` into the file (atomically: a power cut leaves the old or the new file)."""
        if self.path is None:
            return
        data = self.load() | changes
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(data))
            tmp.replace(self.path)
        except OSError as exc:
            _errors.warning(str(self.path), "cannot remember the protocol in %s: %s", self.path, exc)
