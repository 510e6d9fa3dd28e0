"""Small helpers for the simulator tests: a pyserial terminal and a sans-I/O chip."""

from __future__ import annotations

import serial

from firmware_sim import Simulator
from firmware_sim.elm327 import Elm327


class Terminal:
    """A host on the pty: writes a command, reads up to and including the prompt."""

    def __init__(self, path: str, timeout: float = 3.0) -> None:
        self.port = serial.Serial(path, 38400, timeout=timeout)

    def cmd(self, line: bytes | str) -> bytes:
        raw = line.encode() if isinstance(line, str) else line
        self.port.write(raw + b"\r")
        return self.port.read_until(b">")

    def close(self) -> None:
        self.port.close()


def chip(sim: Simulator, *commands: str) -> Elm327:
    """A fresh chip on ``sim``'s car with ``commands`` already executed (echo off first)."""
    elm = sim.new_elm()
    for c in ("ATE0", *commands):
        elm.execute(c.encode())
    return elm


def say(elm: Elm327, command: str) -> bytes:
    """Everything the chip prints for ``command``."""
    return elm.execute(command.encode()).data()


def lines(out: bytes) -> list[str]:
    """The non-empty lines of a reply, prompt removed."""
    text = out.decode().replace("\n", "")
    assert text.endswith(">"), text
    return [ln.rstrip(" ") for ln in text[:-1].split("\r") if ln]
