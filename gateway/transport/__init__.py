"""Transports to the adapter, chosen by the port string and loaded lazily.

=========================  ==========================================  ==========================
port string                transport                                   optional dependency
=========================  ==========================================  ==========================
``/dev/ttyUSB0``, ``COM3`` :class:`~gateway.transport.serial.SerialTransport`   pyserial
``tcp:HOST:PORT``          :class:`~gateway.transport.tcp.TcpTransport`         (stdlib)
``ble:NAME_OR_ADDRESS``    :class:`~gateway.transport.ble.BleTransport`         bleak
``can:INTERFACE:CHANNEL``  :class:`~gateway.transport.can.CanTransport`         python-can, can-isotp
=========================  ==========================================  ==========================

As in python-can's interface table, a backend module (and its third-party library) is imported
only when a port of its kind is asked for, so a missing bleak never breaks a serial set-up.
"""

from __future__ import annotations

import importlib
from typing import Any

from gateway.config import PortSpec
from gateway.errors import ConfigError

#: kind → (module, class)
BACKENDS: dict[str, tuple[str, str]] = {
    "serial": ("gateway.transport.serial", "SerialTransport"),
    "tcp": ("gateway.transport.tcp", "TcpTransport"),
    "ble": ("gateway.transport.ble", "BleTransport"),
    "can": ("gateway.transport.can", "CanTransport"),
}


def _backend(kind: str) -> Any:
    module_name, cls_name = BACKENDS[kind]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"adapter.port: the {kind} transport needs a library that is not installed ({exc.name or exc})"
        ) from exc
    return getattr(module, cls_name)


def create(spec: PortSpec, baud: int = 38400) -> Any:
    """A new, unopened transport for ``spec`` (``AdapterConfig.port_spec``): a byte stream, or a
    CanTransport for ``can:``."""
    cls = _backend(spec.kind)
    if spec.kind == "serial":
        return cls(spec.target, baud)
    if spec.kind == "tcp":
        return cls(spec.target, spec.port)
    if spec.kind == "ble":
        return cls(spec.target)
    return cls(spec.target, spec.channel)
