"""What every uplink implements, and the records the forwarder hands to it.

An uplink knows nothing of the store (DESIGN.md: the forwarder mediates). It receives
:class:`Record` objects whose ``body`` is already in the back-end's vocabulary:

The forwarder builds these bodies from the store's bytes with :mod:`gateway.uplink.drust`:

* ``timeseries``: a list of DRUST Timeseries items without ``device`` (``{"date": ms, "speed": 42.0, ...}``),
  one item per timestamp (and per ECU when several answer);
* ``event``: :meth:`gateway.model.Event.to_dict`;
* ``trip``: :meth:`gateway.model.TripRecord.to_dict`.

``send`` returns the ids the receiver acknowledged; ids it did not return are sent again later
(at-least-once: receivers de-duplicate by id). Errors it raises tell the forwarder what to do:

* :class:`~gateway.errors.RejectedBatch`: the receiver says the data is malformed; retrying the same bytes
  will not help (after N tries the record goes to the dead-letter table);
* :class:`RetryLater`: rate limit or server trouble, with the server's ``Retry-After`` when it gave one;
* any other :class:`~gateway.errors.UplinkError`: connection trouble; reconnect with backoff.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

from gateway.errors import UplinkError
from gateway.model import RecordKind
from gateway.uplink.drust import record_body

#: The record kinds, by name (defined once in :mod:`gateway.model`).
Kind = RecordKind


class Record:
    """One stored record on its way to a back-end; ``id`` is stable across retries and restarts.

    ``raw`` is the stored bytes (for timeseries, the columnar batch of :mod:`gateway.common.samplebatch`), for
    an uplink that encodes from the samples themselves (MQTT's change filter and payloads). ``body``, the
    record in the back-end's vocabulary, is built from ``raw`` on first use when not given: an uplink that
    never reads it (MQTT) does not pay for a DRUST dict per value.
    """

    __slots__ = ("_body", "count", "id", "kind", "raw", "ts_ms")

    def __init__(
        self, id: str, kind: Kind, ts_ms: int, count: int, body: Any = None, *, raw: bytes | None = None
    ) -> None:
        self.id = id
        self.kind = kind
        self.ts_ms = ts_ms
        self.count = count
        self.raw = raw
        self._body = body

    @property
    def body(self) -> Any:
        """The record in the back-end vocabulary (:func:`gateway.uplink.drust.record_body` of ``raw``)."""
        if self._body is None and self.raw is not None:
            self._body = record_body(self.kind, self.raw)
        return self._body

    def __repr__(self) -> str:
        return f"Record({self.id!r}, {self.kind!r}, {self.ts_ms}, count={self.count})"


class RetryLater(UplinkError):
    """The back-end asked us to slow down (429) or is in trouble (5xx); ``retry_after_s`` if it said."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Uplink(abc.ABC):
    """A connection to one back-end."""

    name: str = "uplink"

    @property
    @abc.abstractmethod
    def connected(self) -> bool:
        """True while :meth:`send` can be expected to reach the back-end."""

    @abc.abstractmethod
    async def connect(self) -> None:
        """Open the connection (and log in); raises :class:`~gateway.errors.UplinkError` on failure."""

    @abc.abstractmethod
    async def send(self, batch: Sequence[Record]) -> list[str]:
        """Deliver ``batch`` (oldest first); return the ids the receiver acknowledged."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the connection (idempotent)."""
