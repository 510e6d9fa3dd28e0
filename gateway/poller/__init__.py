"""The poller stage: session + scheduler + cache (:mod:`gateway.poller.core`), the waiting-request queue
(:mod:`gateway.poller.requests`) and the parked plan (:mod:`gateway.poller.parked`)."""

from gateway.poller.core import DEFAULT_RATE_HZ, Poller, SessionFactory, default_rate, pid_name

__all__ = ["DEFAULT_RATE_HZ", "Poller", "SessionFactory", "default_rate", "pid_name"]
