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
from dataclasses import dataclass
from typing import Any

from gateway.errors import ConfigError

#: kind → (module, class)
BACKENDS: dict[str, tuple[str, str]] = {
    "serial": ("gateway.transport.serial", "SerialTransport"),
    "tcp": ("gateway.transport.tcp", "TcpTransport"),
    "ble": ("gateway.transport.ble", "BleTransport"),
    "can": ("gateway.transport.can", "CanTransport"),
}


@dataclass(frozen=True, slots=True)
class PortSpec:
    """A parsed port string."""

    kind: str
    target: str  # device path, host, BLE name/address, or python-can interface
    port: int = 0  # TCP port
    channel: str = ""  # CAN channel


def parse_port(port: str) -> PortSpec:
    """Parse an ``adapter.port`` string; raises ConfigError naming the problem."""
    p = port.strip()
    if not p:
        raise ConfigError("adapter.port: must not be empty")
    low = p.lower()
    if low.startswith("tcp:"):
        rest = p[4:]
        host, sep, num = rest.rpartition(":")
        if not sep:
            host, num = rest, "35000"
        host = host.strip("[]") or "192.168.0.10"
        try:
            tcp_port = int(num)
        except ValueError:
            raise ConfigError(f"adapter.port: {port!r}: TCP port must be a number") from None
        if not 0 < tcp_port < 65536:
            raise ConfigError(f"adapter.port: {port!r}: TCP port must be 1-65535")
        return PortSpec("tcp", host, port=tcp_port)
    if low.startswith("ble:"):
        target = p[4:]
        if not target:
            raise ConfigError(f"adapter.port: {port!r}: give the adapter's BLE name or address after 'ble:'")
        return PortSpec("ble", target)
    if low.startswith("can:"):
        parts = p[4:].split(":", 1)
        interface = parts[0] or "socketcan"
        channel = parts[1] if len(parts) > 1 and parts[1] else ("can0" if interface == "socketcan" else "")
        return PortSpec("can", interface, channel=channel)
    if low.startswith("serial:"):
        p = p[7:]
    return PortSpec("serial", p)


def _backend(kind: str) -> Any:
    module_name, cls_name = BACKENDS[kind]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"adapter.port: the {kind} transport needs a library that is not installed ({exc.name or exc})"
        ) from exc
    return getattr(module, cls_name)


def create(port: str, baud: int = 38400) -> Any:
    """A new, unopened transport for ``port``: a byte stream, or a CanTransport for ``can:``."""
    spec = parse_port(port)
    cls = _backend(spec.kind)
    if spec.kind == "serial":
        return cls(spec.target, baud)
    if spec.kind == "tcp":
        return cls(spec.target, spec.port)
    if spec.kind == "ble":
        return cls(spec.target)
    return cls(spec.target, spec.channel)
