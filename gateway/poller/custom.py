"""User-defined PIDs in the poller: their place in the scheduler, one request per (ECU, service, DID) per
batch, formulas evaluated by the selected parser build, sanity bounds, negative responses.

Each custom PID is a scheduler entry under a virtual PID number (``VIRTUAL_BASE + index``) on the ECU of
its response id, so rates, priorities, fairness, NO DATA back-off and the cache treat it like a mode 01
PID. Values become :class:`~gateway.model.Sample` ``(name, value, unit, pid=None, ecu=response id)``.

A read the ECU refuses with ``7F sid 11/12/31`` (service or sub-function not supported, request out of
range: ISO 14229-1) :data:`UNSUPPORTED_AFTER` times in a row marks every PID of that request
unsupported: it is no longer polled (``pid_stats`` shows it) until the next connection.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway import obd
from gateway.errors import NegativeResponse, NoDataError, ParseError, UnsupportedCommand
from gateway.link.base import Session
from gateway.model import Sample
from gateway.obd.custom import VIRTUAL_BASE, CustomPid
from gateway.scheduler import SchedulerPolicy

log = logging.getLogger("gateway.poller")

UNSUPPORTED_AFTER = 3
UNSUPPORTED_NRCS = frozenset({0x11, 0x12, 0x31})


@dataclass
class CustomCounts:
    """Per custom PID: values published, values dropped (out of bounds or not a number), short answers."""

    values: int = 0
    out_of_range: int = 0
    short_answer: int = 0
    unsupported: bool = False


@dataclass
class CustomPids:
    """The custom PIDs of one poller (rebuilt when the configuration or the profile changes)."""

    pids: dict[int, CustomPid] = field(default_factory=dict)
    counts: dict[str, CustomCounts] = field(default_factory=dict)
    refusals: dict[tuple[int, int, bytes], int] = field(default_factory=dict)

    @classmethod
    def of(cls, pids: Sequence[CustomPid]) -> CustomPids:
        """Number ``pids`` for the scheduler."""
        return cls({VIRTUAL_BASE + i: p for i, p in enumerate(pids)}, {p.name: CustomCounts() for p in pids})

    def plan(self, policy: SchedulerPolicy, *, fast: bool) -> None:
        """Put every custom PID into ``policy`` (as fast as possible for the ``poll`` command)."""
        for vpid, p in self.pids.items():
            policy.set_pid(vpid, p.response, float("inf") if fast else p.rate_hz, priority=p.priority,
                           always=True, name=p.name, supported=not self.counts[p.name].unsupported)
        mode01_ecus = {e.ecu for e in policy.entries.values() if e.pid < VIRTUAL_BASE}
        for p in self.pids.values():
            if p.response not in mode01_ecus:
                policy.set_max_pids(p.response, policy.max_pids)  # custom PIDs only: group freely

    async def read(self, session: Session, vpids: Sequence[int], ts_ms: int) -> tuple[list[Sample], set[int]]:
        """Read the batch's custom PIDs, one request per distinct request; samples and the virtual PIDs
        that gave a value. Exceptions other than negative responses reach the caller (recovery)."""
        groups: dict[tuple[int, int, bytes], list[int]] = {}
        for v in vpids:
            p = self.pids.get(v)
            if p is not None:
                groups.setdefault(p.request_key, []).append(v)
        samples: list[Sample] = []
        answered: set[int] = set()
        for key, members in groups.items():
            first = self.pids[members[0]]
            try:
                raw = await session.read_raw(first.header, first.response, first.extended, first.request)
            except NegativeResponse as exc:
                self._refused(key, members, exc)
                continue
            except NoDataError:
                continue
            except UnsupportedCommand as exc:  # this link cannot address ECUs (a legacy protocol)
                self._refused(key, members, NegativeResponse(first.service, 0x11), at_once=True)
                log.warning("%s", exc)
                continue
            self.refusals.pop(key, None)
            for v in members:
                sample = self._value(self.pids[v], raw, ts_ms)
                if sample is not None:
                    samples.append(sample)
                    answered.add(v)
        return samples, answered

    def _value(self, p: CustomPid, raw: bytes, ts_ms: int) -> Sample | None:
        counts = self.counts[p.name]
        f = p.formula
        try:
            value = float(obd.parser.eval_formula(f.ops, f.args, raw[p.echo_len :]))
        except ParseError:
            counts.short_answer += 1  # the answer lacks a byte the formula reads: a wrong DID or profile
            return None
        if not p.in_range(value):
            counts.out_of_range += 1
            return None
        counts.values += 1
        return Sample(ts_ms, p.name, value, p.unit, None, p.response)

    def _refused(
        self, key: tuple[int, int, bytes], members: list[int], exc: NegativeResponse, *, at_once: bool = False
    ) -> None:
        if exc.nrc not in UNSUPPORTED_NRCS:
            return  # busy, conditions not correct …: ask again later
        n = UNSUPPORTED_AFTER if at_once else self.refusals.get(key, 0) + 1
        self.refusals[key] = n
        if n >= UNSUPPORTED_AFTER:
            names = [self.pids[v].name for v in members]
            for name in names:
                self.counts[name].unsupported = True
            log.warning("ECU %X refuses %s (%s, %d times): %s no longer polled", key[1], key[2].hex().upper(),
                        exc, n, ", ".join(names))

    def unsupported(self) -> set[int]:
        """Virtual PIDs marked unsupported."""
        return {v for v, p in self.pids.items() if self.counts[p.name].unsupported}

    def status(self) -> dict[str, dict[str, object]]:
        """Per custom PID name: counts and whether it is still polled (``status`` → ``custom``)."""
        return {
            name: {"values": c.values, "out_of_range": c.out_of_range, "short_answer": c.short_answer,
                   "unsupported": c.unsupported}
            for name, c in self.counts.items()
        }


__all__ = ["UNSUPPORTED_AFTER", "CustomCounts", "CustomPids"]
