"""Electric-vehicle battery ECUs: manufacturer-specific reads (services 0x21 and 0x22) on their own ids.

The battery's state comes from this module's own model and tables, never from the gateway's decoders
(the tests compare the two). Energy: traction use per km grows with speed (rolling + aero,
``base_wh_km + aero × v²``), plus the auxiliaries while the ignition is on; the state of charge falls as
the simulated car drives. Pack voltage is the cells' open-circuit voltage (linear in SOC) minus the
current times the internal resistance; current = power / voltage.

Answer layouts (the byte offsets count from the first data byte after the echoed service and DID/LID):

* **Hyundai Kona Electric / Kia e-Niro BMS** (request 7E4, answers 7EC), service 0x22 DID 0x0101, a
  62-byte message: SOC × 2 at 5, charging flags at 9, current × 10 (signed, positive = discharge) at
  10-11, pack voltage × 10 at 12-13, max/min module temperature (°C, signed) at 14/15, module
  temperatures 1-5 at 16-20, battery inlet temperature at 22, 12 V battery × 10 at 29, cumulative
  charged/discharged energy × 10 kWh at 38-41 / 42-45. DID 0x0105 (45 bytes): state of health × 10 at
  25-26, displayed SOC × 2 at 31. Source: EVNotify/EVNotiPi ``cars/KONA_EV.py`` (frame/byte indices of the
  same message: frame 0 holds 6 bytes, later frames 7; byte = 3 + 7 × (frame − 1) + index − 3 here).
* **Nissan Leaf LBC** (request 79B, answers 7BB), service 0x21: group 0x01 (43-byte message, 30 kWh
  pack): state of health ("Hx") × 100 at 26-27, SOC × 10000 at 28-31, capacity × 10000 Ah at 33-35;
  group 0x02 (198 bytes): 96 cell voltages in mV, pack voltage × 100 at 192-193; group 0x04 (16 bytes):
  three pack temperatures in °C at 2, 5, 11 (8 is unused: FF). Source: openvehicles
  Open-Vehicle-Monitoring-System-3 ``vehicle_nissanleaf.cpp`` (PollReply_Battery, PollReply_BMS_Volt,
  PollReply_BMS_Temp, with their sample replies); the SOC position is read from that sample reply.

Negative responses (ISO 14229-1): a DID/LID the ECU lacks → ``7F sid 31`` (requestOutOfRange); any other
service → ``7F sid 11``. ``pending`` DIDs are answered ``7F sid 78`` (responsePending) first, then the
data. Functional requests (7DF) are not answered: these ECUs are reached physically only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from firmware_sim.ecu import Ecu
from firmware_sim.vehicle import Vehicle


@dataclass
class Battery:
    """A traction battery driven by the vehicle's odometer and ignition time."""

    capacity_kwh: float
    cells: int
    soc_pct: float = 80.0
    cell_v_empty: float = 3.45
    cell_v_full: float = 4.15
    resistance_ohm: float = 0.09
    base_wh_km: float = 110.0
    aero_wh_km: float = 0.011  # × (km/h)²
    aux_w: float = 400.0
    temp_c: float = 22.0
    soh_pct: float = 96.5
    current_a: float = 0.0
    charged_kwh: float = 5120.4
    discharged_kwh: float = 4870.9
    _odo: float | None = None
    _run: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def ocv(self) -> float:
        """Open-circuit pack voltage at the current SOC."""
        return self.cells * (self.cell_v_empty + (self.cell_v_full - self.cell_v_empty) * self.soc_pct / 100.0)

    @property
    def voltage(self) -> float:
        """Terminal voltage under the present current."""
        return self.ocv - self.current_a * self.resistance_ohm

    def update(self, odometer_km: float, run_time_s: float, speed_kmh: float, ignition: bool) -> None:
        """Draw the energy used since the last update."""
        with self.lock:
            if self._odo is None or self._run is None:
                self._odo, self._run = odometer_km, run_time_s
                return
            dkm = max(0.0, odometer_km - self._odo)
            dt = max(0.0, run_time_s - self._run)
            self._odo, self._run = odometer_km, run_time_s
            avg_kmh = dkm / (dt / 3600.0) if dt > 0 else speed_kmh
            wh = dkm * (self.base_wh_km + self.aero_wh_km * avg_kmh**2) + self.aux_w * dt / 3600.0
            self.soc_pct = max(0.0, self.soc_pct - wh / (self.capacity_kwh * 10.0))
            self.discharged_kwh += wh / 1000.0
            power_w = (self.base_wh_km + self.aero_wh_km * speed_kmh**2) * speed_kmh + self.aux_w
            self.current_a = power_w / self.ocv if ignition else 0.0
            self.temp_c = min(35.0, self.temp_c + wh / 4000.0)  # the pack warms slowly under load


def _u(value: float, size: int) -> bytes:
    return max(0, min(round(value), (1 << (8 * size)) - 1)).to_bytes(size, "big")


def _s(value: float, size: int) -> bytes:
    lim = 1 << (8 * size - 1)
    return max(-lim, min(round(value), lim - 1)).to_bytes(size, "big", signed=True)


def _place(length: int, fields: dict[int, bytes], filler: int = 0x00) -> bytes:
    out = bytearray([filler]) * length
    for at, data in fields.items():
        out[at : at + len(data)] = data
    return bytes(out)


# -- Hyundai Kona Electric / Kia e-Niro (EVNotiPi cars/KONA_EV.py offsets, see the module docstring) ------
def kona_0101(b: Battery) -> bytes:
    """DID 0101 data (59 bytes after 62 01 01)."""
    t = b.temp_c
    return _place(59, {
        5: _u(b.soc_pct * 2, 1),
        9: b"\x00",
        10: _s(b.current_a * 10, 2),
        12: _u(b.voltage * 10, 2),
        14: _s(t + 1, 1),
        15: _s(t - 1, 1),
        16: bytes(_s(t + d, 1)[0] for d in (0, 1, -1, 0, 1)),
        22: _s(t - 2, 1),
        29: _u(14.1 * 10 if b.current_a else 12.6 * 10, 1),
        38: _u(b.charged_kwh * 10, 4),
        42: _u(b.discharged_kwh * 10, 4),
    }, filler=0xFF)


def kona_0105(b: Battery) -> bytes:
    """DID 0105 data (42 bytes after 62 01 05)."""
    return _place(42, {25: _u(b.soh_pct * 10, 2), 31: _u(b.soc_pct * 2, 1)})


# -- Nissan Leaf LBC (OVMS vehicle_nissanleaf.cpp layouts) -----------------------------------------------
def leaf_01(b: Battery) -> bytes:
    """Group 01 data (41 bytes after 61 01, 30 kWh pack)."""
    return _place(41, {
        0: _s(-b.current_a * 1024 / 1000, 4),  # not decoded by the profile; sign as in OVMS's sample
        26: _u(b.soh_pct * 100, 2),
        28: _u(b.soc_pct * 10000, 4),
        33: _u(80.0 * b.soh_pct / 100 * 10000, 3),
        36: b"\x80\x00\x01",
    })


def leaf_02(b: Battery) -> bytes:
    """Group 02 data (196 bytes after 61 02): 96 cell voltages in mV, pack and bus voltage × 100."""
    cell_mv = b.voltage / b.cells * 1000
    cells = b"".join(_u(cell_mv + ((i * 7) % 5) - 2, 2) for i in range(96))
    return cells + _u(b.voltage * 100, 2) + _u(b.voltage * 100, 2)


def leaf_04(b: Battery) -> bytes:
    """Group 04 data (14 bytes after 61 04): thermistor raw values and °C per pack sensor."""
    t = b.temp_c

    def sensor(c: float) -> bytes:
        return _u(710 - c / 0.102, 2) + _s(c, 1)

    return sensor(t) + sensor(t + 1) + b"\xff\xff\xff" + sensor(t - 1) + _s(t, 1) + b"\x00"


Builder = Callable[[Battery], bytes]


@dataclass
class BatteryEcu(Ecu):
    """An EV battery ECU on its own 11-bit request/response identifiers."""

    request_id: int = 0x7E4
    response_id: int = 0x7EC
    battery: Battery = field(default_factory=lambda: Battery(64.0, 98))
    #: (service, DID or LID) → data builder
    table: dict[tuple[int, int], Builder] = field(default_factory=dict)
    #: (service, DID) answered 7F sid 78 (response pending) before the data
    pending: set[tuple[int, int]] = field(default_factory=set)

    @property
    def can_id_11(self) -> int:
        """The response identifier."""
        return self.response_id

    @property
    def request_id_11(self) -> int:
        """The physical request identifier."""
        return self.request_id

    @property
    def can_id_29(self) -> int:
        """Not on 29-bit buses: an identifier no tester uses."""
        return 0x18DAF1FE

    @property
    def request_id_29(self) -> int:
        """Not on 29-bit buses."""
        return 0x18DAFEF1

    def handle(self, vehicle: Vehicle, request: bytes, *, can: bool = True, physical: bool = False) -> list[bytes]:
        """Answer a physical 21/22 read from this module's table; functional requests get silence."""
        if not request or not physical or not can:
            return []
        with vehicle.lock:
            st = vehicle.state
            if not st.ignition:
                return []
            self.battery.update(st.odometer_km, st.run_time_s, st.speed_kmh, st.ignition)
        sid = request[0]
        if sid == 0x22 and len(request) == 3:
            key, echo = (0x22, int.from_bytes(request[1:3], "big")), request[1:3]
        elif sid == 0x21 and len(request) == 2:
            key, echo = (0x21, request[1]), request[1:2]
        else:
            return [bytes([0x7F, sid, 0x11 if sid not in (0x21, 0x22) else 0x13])]
        builder = self.table.get(key)
        if builder is None:
            return [bytes([0x7F, sid, 0x31])]
        with self.battery.lock:
            answer = bytes([sid + 0x40]) + echo + builder(self.battery)
        if key in self.pending:
            return [bytes([0x7F, sid, 0x78]), answer]
        return [answer]


def kona_bms(soc_pct: float = 80.0) -> BatteryEcu:
    """The Kona Electric / e-Niro battery management system (7E4 → 7EC)."""
    return BatteryEcu("kona_bms", 0x30, frozenset(), ecu_name="BMS", has_vin=False, latency_offset=0.006,
                      request_id=0x7E4, response_id=0x7EC, battery=Battery(64.0, 98, soc_pct=soc_pct),
                      table={(0x22, 0x0101): kona_0101, (0x22, 0x0105): kona_0105})


def leaf_lbc(soc_pct: float = 80.0) -> BatteryEcu:
    """The Nissan Leaf Li-ion battery controller (79B → 7BB), 30 kWh pack."""
    return BatteryEcu("leaf_lbc", 0x31, frozenset(), ecu_name="LBC", has_vin=False, latency_offset=0.008,
                      request_id=0x79B, response_id=0x7BB,
                      battery=Battery(30.0, 96, soc_pct=soc_pct, cell_v_empty=3.4, cell_v_full=4.1),
                      table={(0x21, 0x01): leaf_01, (0x21, 0x02): leaf_02, (0x21, 0x04): leaf_04})


def long_answer(length: int) -> Builder:
    """A test DID whose data is ``length`` bytes counting up (byte i = i & 0xFF)."""
    return lambda _b: bytes(i & 0xFF for i in range(length))


__all__ = ["Battery", "BatteryEcu", "kona_bms", "leaf_lbc", "long_answer"]
