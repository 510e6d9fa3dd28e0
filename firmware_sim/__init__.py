"""firmware_sim — an ELM327 adapter and a car, simulated faithfully enough for real OBD software.

Stable contracts (other parts of the project rely on them; extend, don't break):

Command line — ``obd-gateway-sim [--drive FILE|NAME] [--seed N] [--fast] [--tcp PORT] [--slcan]
[--truth FILE] [--time-scale X] [--baud N] [--control PATH] [--protocol P] [--strict-baud] [--elm-version S]
[--pipelining] [--adapter NAME]``
    Prints the port as the FIRST line of stdout and flushes: the pseudo-terminal's stable symlink path
    (``/tmp/obd-sim-XXXX/elm327``; ``close_port`` removes it, ``reopen_port`` makes the same path point at a new
    pty), ``tcp:127.0.0.1:PORT`` with ``--tcp``, or ``can:slcan:PATH`` (the SLCAN pty's symlink) with ``--slcan``, each
    pasteable into ``obd-gateway poll --port``. Serves until
    SIGTERM/SIGINT, then exits 0. ``--truth FILE`` appends the ground truth as JSON lines; ``--control PATH``
    opens a Unix socket taking JSON-line commands (see :meth:`Simulator.command`), one JSON answer per line:
    ``{"fault": "no_data", "on": true, "rate": 1.0}``, ``{"clear_faults": true}``, ``{"ignition": false}``,
    ``{"set_dtcs": ["P0301"], "mil": true}``, ``{"clear_dtcs": true}``, ``{"hold_speed": 80}``,
    ``{"release": true}``, ``{"advance": 10}``, ``{"close_port": true}``, ``{"reopen_port": true}``,
    ``{"state": true}`` (answer has ``state`` and ``faults``), ``{"truth": true}``.

In-process — :class:`Simulator`::

    sim = Simulator(drive=None | "short" | path, seed=1, fast=True, time_scale=1.0, protocol="6",
                    clock="wall" | "manual", truth_path=None, baud=38400, strict_baud=False,
                    pipelining=False,  # True: a line-buffering adapter; False: a genuine ELM327 (STOPPED)
                    adapter="genuine")  # a personality of firmware_sim.adapters (clone-v15, clone-3pid, stn, ...)
    sim.nonread                                # requests outside the read set (firmware_sim.audit)
    with sim.serve_pty() as path: ...          # a real pty (pyserial opens `path`), served by a thread
    srv = sim.serve_tcp(port=0); srv.port      # a Wi-Fi style adapter on loopback
    sim.serve_can("vcan-test")                 # ISO-TP ECUs on can.Bus(interface="virtual", channel=...)
    srv = sim.serve_slcan(); srv.path          # the same over an SLCAN (Lawicel) pty
    sim.faults.set("no_data", True)            # any fault of firmware_sim.faults.FAULTS, with rate=
    sim.vehicle.set_ignition(False); sim.vehicle.set_dtcs(["P0301"]); sim.vehicle.state.speed_kmh
    sim.truth.records / .samples() / .events("hard_brake")
    sim.close_port(); sim.reopen_port()        # the adapter vanishes (path removed) and comes back there
    sim.advance(10.0)                          # 10 s of simulated driving at once
    sim.stop()

Timing — :mod:`firmware_sim.timing`: :class:`~firmware_sim.timing.TimingModel` and
``exchange_duration(...)`` give the expected duration of an exchange (bytes both ways at the baud rate,
ECU latency, the chip's wait after the last answer unless the response-count digit is satisfied);
``answer_bytes(...)`` the bytes printed for a CAN answer; ``max_pid_rate(...)`` the link's theoretical
maximum of PIDs per second; ``single_pid_round_trip(...)`` one mode-01 request.

Fixtures — ``tests/fixtures/sim.py``: ``sim``, ``sim_pty``, ``sim_cli`` (see docs/simulator.md).

Drive scripts — TOML, documented in :mod:`firmware_sim.drive` and docs/simulator.md; built-ins
``default`` (repeating ~6 min loop) and ``short`` (~70 s, for tests).

Values are encoded from this package's own SAE J1979 tables (:mod:`firmware_sim.j1979`), never with
the gateway's decoders.
"""

from firmware_sim import audit
from firmware_sim.adapters import PERSONALITIES, Personality
from firmware_sim.drive import Drive, DriveError, load_drive
from firmware_sim.faults import FAULTS, Faults
from firmware_sim.simulator import Simulator
from firmware_sim.timing import TimingModel

__all__ = ["FAULTS", "PERSONALITIES", "Drive", "DriveError", "Faults", "Personality", "Simulator", "TimingModel",
           "audit", "load_drive"]
