"""Which mode 01 request form each ECU gets, and how it changes at run time. Sans-I/O.

Cheap adapters differ in what they accept: a genuine ELM327 takes six PIDs per request on CAN and the
response-count digit; many v1.5/v2.1 clones take three PIDs at most, ignore or reject the count digit, or
answer ``?`` to a long line (python-OBD issue threads and the ELM327 datasheet's "Multiple PID requests"
section describe both). So the session probes the exact forms it will use, fastest first, and keeps the
first that answers correctly (:func:`probe_order`); at run time :class:`FormKeeper` demotes a form that
fails :data:`STRIKES` times in a row (``?``, STOPPED, BUFFER FULL, CAN ERROR, a garbled answer) to the next
slower one, and later tries the faster form again once, with a wait that doubles after every failed try
(hysteresis: a flaky link does not flap between forms, and never stalls on a form that does not work).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.link.base import RequestForm
from gateway.obd.protocols import MAX_PIDS_PER_REQUEST

#: consecutive failures of a form before it is demoted
STRIKES = 2
#: first wait before trying a faster form again after a demotion; doubles after each failed try
RETRY_UP_S = 60.0
RETRY_UP_MAX_S = 1800.0
#: successes in a row that make a tried faster form stick
CONFIRM = 20
PIDS_PER_REQUEST = (MAX_PIDS_PER_REQUEST, 4, 3, 2, 1)


def probe_order(*, multi: bool, count: bool, usable: int) -> list[RequestForm]:
    """The forms to probe, fastest first: PIDs per request 6/4/3/2/1 (only 1 without ``multi``, and no
    more than the ``usable`` PIDs the ECU has), each with then without the count digit."""
    sizes = [n for n in PIDS_PER_REQUEST if n <= max(1, usable)] if multi else [1]
    return [RequestForm(n, c) for n in sizes for c in ((True, False) if count else (False,))]


@dataclass
class _EcuForms:
    ladder: list[RequestForm]
    index: int  # current form's position in ladder
    best: int  # the fastest form the probe kept: never try above it
    failures: int = 0
    successes: int = 0
    trial: int | None = None  # the slower form to fall back to while a faster one is being tried
    retry_at: float = 0.0
    wait_s: float = RETRY_UP_S
    demotions: int = 0


@dataclass
class FormKeeper:
    """Per ECU: the form in use, demotion on repeated failure, a later retry of the faster form."""

    ecus: dict[int, _EcuForms] = field(default_factory=dict)

    def keep(self, ecu: int, ladder: list[RequestForm], form: RequestForm) -> None:
        """Start ``ecu`` on ``form`` (what the probe found), with ``ladder`` (fastest first) to move along."""
        if form not in ladder:
            ladder = sorted({*ladder, form}, reverse=True)
        i = ladder.index(form)
        self.ecus[ecu] = _EcuForms(ladder=ladder, index=i, best=i)

    def current(self, ecu: int) -> RequestForm:
        """The form to use for ``ecu`` now (one PID, no count digit for an ECU never probed)."""
        st = self.ecus.get(ecu)
        return st.ladder[st.index] if st is not None else RequestForm(1, False)

    def success(self, ecu: int, now: float) -> RequestForm | None:
        """A request in the current form answered correctly. Returns a faster form to try from now on
        when one is due (the caller logs it), else None."""
        st = self.ecus.get(ecu)
        if st is None:
            return None
        st.failures = 0
        st.successes += 1
        if st.trial is not None and st.successes >= CONFIRM:
            st.trial = None  # the faster form holds
            st.wait_s = RETRY_UP_S
        if st.trial is None and st.index > st.best and now >= st.retry_at:
            st.trial = st.index
            st.index -= 1
            st.successes = 0
            return st.ladder[st.index]
        return None

    def failure(self, ecu: int, now: float) -> RequestForm | None:
        """A request in the current form failed in a way the form may cause. Returns the slower form to
        use from now on when the form is demoted, else None."""
        st = self.ecus.get(ecu)
        if st is None:
            return None
        st.successes = 0
        if st.trial is not None:
            # the faster form still fails: back at once, and wait twice as long before the next try
            st.index, st.trial = st.trial, None
            st.wait_s = min(st.wait_s * 2, RETRY_UP_MAX_S)
            st.retry_at = now + st.wait_s
            st.failures = 0
            return st.ladder[st.index]
        st.failures += 1
        if st.failures < STRIKES or st.index + 1 >= len(st.ladder):
            return None
        st.index += 1
        st.failures = 0
        st.demotions += 1
        st.retry_at = now + st.wait_s
        return st.ladder[st.index]
