"""The timing model of an ELM327 exchange, as a pure function of its parameters.

One exchange (the host writes a command line, the chip answers and prints its prompt) costs:

    t_in      = bytes_in * bits_per_byte / baud              the command line, CR included, at the baud rate
    t_first   = ecu_latency                                  from the end of the request to the first answer
    t_out     = bytes_out * bits_per_byte / baud             echo + answer lines, sent while the chip waits
    t_wait    = the chip's wait for more answers after the last one:
                  0                   when the response-count digit (``010C1``) has been satisfied,
                  st_timeout          with adaptive timing off (AT0),
                  adaptive(latency)   with AT1 / AT2 (see :meth:`TimingModel.wait_after_last`)
    t_prompt  = bytes of the closing blank line and ``>`` at the baud rate

    total = t_in + max(t_latency + t_out, t_latency + t_wait) + t_prompt      (one answering ECU, echo off)

The serial output of the answer lines overlaps the wait (the UART drains while the chip listens), which
is why the two are combined with ``max``; the prompt can only follow both. With 8N1 framing every byte
costs 10 bits. NO DATA costs the full ST time-out (adaptive timing never shortens a silent bus).

Defaults (documented in docs/simulator.md): 38400 baud, 15 ms ECU latency on CAN (±2 ms jitter in the
simulator, not in the model), 60 ms on legacy protocols, ST = 0x32 × 4.096 ms = 204.8 ms, adaptive
timing AT1. The simulator applies exactly these numbers (:mod:`firmware_sim.server`); ``bench/sim_timing.py``
compares a measured round trip with :func:`TimingModel.exchange_duration`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

BITS_PER_BYTE = 10  # 8N1: start bit, 8 data bits, stop bit
ST_UNIT_S = 0.004096  # ATST hh counts in 4.096 ms steps
DEFAULT_ST = 0x32
DEFAULT_BAUD = 38400
CAN_LATENCY_S = 0.015
LEGACY_LATENCY_S = 0.060
# Adaptive timing: the chip shortens its wait to what it has seen the ECUs need, plus a margin.
AT1_FACTOR = 2.0
AT1_MARGIN_S = 0.010
AT2_FACTOR = 1.25
AT2_MARGIN_S = 0.004
ADAPTIVE_FLOOR_S = 0.008


def serial_time(nbytes: int, baud: int) -> float:
    """Seconds that ``nbytes`` take on an 8N1 serial line at ``baud``."""
    if baud <= 0:
        raise ValueError(f"baud must be positive, got {baud}")
    return nbytes * BITS_PER_BYTE / baud


def brd_baud(divisor: int) -> int:
    """The baud rate selected by ``ATBRD hh`` (4 MHz / hh, as the datasheet defines it)."""
    if not 8 <= divisor <= 0xFF:
        raise ValueError(f"ATBRD divisor out of range: {divisor:#x}")
    return round(4_000_000 / divisor)


@dataclass(frozen=True, slots=True)
class TimingModel:
    """Parameters of the ELM327 timing model; all durations in seconds."""

    baud: int = DEFAULT_BAUD
    ecu_latency: float = CAN_LATENCY_S
    jitter: float = 0.002
    st: int = DEFAULT_ST
    adaptive: int = 1  # ATAT0 / ATAT1 / ATAT2

    @property
    def st_timeout(self) -> float:
        """The ATST time-out in seconds (``st`` × 4.096 ms; ``ATST 00`` restores the default)."""
        return (self.st or DEFAULT_ST) * ST_UNIT_S

    def with_(self, **changes: object) -> TimingModel:
        """A copy with some fields changed (ATST, ATAT, ATBRD change the live model)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    def wait_after_last(self, latency: float | None = None) -> float:
        """How long the chip listens for further answers after the last one.

        AT0 waits the full ST time-out. AT1/AT2 wait a multiple of the latency the ECUs have shown plus
        a margin, never more than ST and never less than a floor (the real chip learns the same way).
        """
        lat = self.ecu_latency if latency is None else latency
        if self.adaptive == 0:
            return self.st_timeout
        wait = lat * AT2_FACTOR + AT2_MARGIN_S if self.adaptive == 2 else lat * AT1_FACTOR + AT1_MARGIN_S
        return min(self.st_timeout, max(ADAPTIVE_FLOOR_S, wait))

    def exchange_duration(
        self,
        bytes_in: int,
        bytes_out: int,
        *,
        echo_bytes: int = 0,
        prompt_bytes: int = 2,
        answers: int = 1,
        count_satisfied: bool = False,
        latency: float | None = None,
    ) -> float:
        """Expected seconds from the first command byte sent to the prompt received.

        ``bytes_in`` is the command line with its CR; ``echo_bytes`` the echo (0 with ATE0), sent as soon
        as the CR is in; ``bytes_out`` the answer lines; ``prompt_bytes`` the closing part (``\\r>`` = 2,
        ``\\r\\n>`` = 3). ``answers`` = 0 means nobody answered: the chip waits the full ST time-out
        before printing NO DATA (``bytes_out`` is then that line). Formula::

            start  = t_in + max(latency, t_echo)      answer lines leave once they exist and the UART is free
            ready  = t_in + latency + wait            wait = 0 when the count digit is satisfied
            total  = max(start + t_out, ready) + t_prompt
        """
        lat = self.ecu_latency if latency is None else latency
        t_in = serial_time(bytes_in, self.baud)
        t_echo = serial_time(echo_bytes, self.baud)
        t_out = serial_time(bytes_out, self.baud)
        t_prompt = serial_time(prompt_bytes, self.baud)
        if answers == 0:
            return max(t_in + t_echo, t_in + self.st_timeout) + t_out + t_prompt
        wait = 0.0 if count_satisfied else self.wait_after_last(lat)
        start = t_in + max(lat, t_echo)
        ready = t_in + lat + wait
        return max(start + t_out, ready) + t_prompt


def single_pid_round_trip(model: TimingModel | None = None, *, headers: bool = False, spaces: bool = True,
                          echo: bool = False, linefeeds: bool = False, count_digit: bool = False,
                          data_bytes: int = 2) -> float:
    """The model's round trip of one mode-01 request answered by one ECU (e.g. ``010C`` → ``41 0C 1A F8``).

    A convenience for benchmarks: builds the byte counts of the command and answer lines for the given
    formatting and hands them to :meth:`TimingModel.exchange_duration`.
    """
    m = model or TimingModel()
    eol = 2 if linefeeds else 1
    cmd = 4 + (1 if count_digit else 0)
    nbytes = 2 + data_bytes  # 41 PID data...
    if headers:
        nbytes += 1  # PCI byte shown with headers on
    line = nbytes * 2 + (nbytes if spaces else 0)
    if headers:
        line += 3 + (1 if spaces else 0)
    return m.exchange_duration(cmd + 1, line + eol, echo_bytes=(cmd + eol) if echo else 0, prompt_bytes=eol + 1,
                               answers=1, count_satisfied=count_digit)


def answer_bytes(message_len: int, *, headers: bool = False, spaces: bool = True, linefeeds: bool = False,
                 extended: bool = False, dlc: bool = False) -> int:
    """Bytes the chip prints for one CAN answer of ``message_len`` bytes (CAN auto-formatting on).

    Single frames (≤ 7 bytes) are one line; longer messages are ISO-TP multi-frame: with headers off a
    length line plus ``0:``/``1:`` lines, with headers on every raw 8-byte frame on its own line.
    """
    eol = 2 if linefeeds else 1
    per = 3 if spaces else 2
    frames = 1 if message_len <= 7 else 1 + -(-(message_len - 6) // 7)
    if not headers:
        if frames == 1:
            return message_len * per + eol
        index = 3 if spaces else 2  # "0: " / "0:"
        return (3 + eol) + (index + 6 * per + eol) + (frames - 1) * (index + 7 * per + eol)
    head = (12 if spaces else 8) if extended else (4 if spaces else 3)
    if dlc:
        head += 2 if spaces else 1
    if frames == 1:
        return head + (1 + message_len) * per + eol
    return frames * (head + 8 * per + eol)


def max_pid_rate(model: TimingModel | None = None, *, pids_per_request: int = 6, data_bytes_per_pid: int = 2,
                 headers: bool = False, spaces: bool = False, linefeeds: bool = False, count_digit: bool = True,
                 echo: bool = False) -> float:
    """The theoretical maximum of mode-01 PIDs per second over one ELM327 link, one request at a time.

    A request of ``pids_per_request`` PIDs (``010C0D…``, plus the count digit ``1`` when used) answered by
    one ECU with ``data_bytes_per_pid`` data bytes each; the result is PIDs divided by the model's
    exchange duration. The defaults are the fastest settings (ATE0 ATS0 ATH0, 6 PIDs, count digit).
    """
    m = model or TimingModel()
    eol = 2 if linefeeds else 1
    cmd = 2 + 2 * pids_per_request + (1 if count_digit else 0)
    message = 1 + pids_per_request * (1 + data_bytes_per_pid)
    out = answer_bytes(message, headers=headers, spaces=spaces, linefeeds=linefeeds)
    duration = m.exchange_duration(cmd + 1, out, echo_bytes=(cmd + eol) if echo else 0, prompt_bytes=eol + 1,
                                   count_satisfied=count_digit)
    return pids_per_request / duration


def form_ceiling(model: TimingModel, exchanges: list[tuple[int, int, int, int]], *, prompt_bytes: int = 2,
                 count_satisfied: bool = False, link_latency: float = 0.0) -> float:
    """Values per second of a polling cycle made of ``exchanges``, one request at a time (non-pipelined).

    Each exchange is ``(values, bytes_in, bytes_out, echo_bytes)``: the values it returns, the command line
    with its CR, the answer bytes and the echo (an echo that stays on after ATE0 costs its bytes too).
    ``link_latency`` is added per exchange (a Wi-Fi / BLE bridge). The adapter personalities' ceilings
    (:func:`firmware_sim.adapters.ceiling`) are this function applied to their best request form.
    """
    total = sum(model.exchange_duration(b_in, b_out, echo_bytes=echo, prompt_bytes=prompt_bytes,
                                        count_satisfied=count_satisfied) + link_latency
                for _, b_in, b_out, echo in exchanges)
    values = sum(v for v, _, _, _ in exchanges)
    return values / total if total > 0 else 0.0
