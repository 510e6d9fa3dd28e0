"""The link to the car: the session contract (:mod:`gateway.link.base`), request forms, the raw CAN session.

The ELM327 session lives in :mod:`gateway.elm327`; both implement :class:`~gateway.link.base.Session`.
Sessions are built only by the composition root (``gateway.daemon.session_factory``).
"""

from gateway.link.base import DtcReport, LinkInfo, Polled, RequestForm, Session

__all__ = ["DtcReport", "LinkInfo", "Polled", "RequestForm", "Session"]
