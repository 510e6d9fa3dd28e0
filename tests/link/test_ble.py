"""The BLE transport against FakeBleakClient (no radio here), with the simulator's ELM327 behind it."""

from __future__ import annotations

from typing import Any

import pytest

from firmware_sim import Simulator
from gateway.config import parse_port
from gateway.elm327.session import Elm327Session
from gateway.errors import TransportError
from gateway.transport import create
from gateway.transport.ble import BleTransport, find_layout, split_for_mtu
from tests.link.fake_ble import FakeBleakClient, FakeServices, gatt


def test_split_for_mtu() -> None:
    assert split_for_mtu(b"x" * 45, 20) == [b"x" * 20, b"x" * 20, b"x" * 5]
    assert split_for_mtu(b"", 20) == []


@pytest.mark.parametrize("layout", ["fff0", "ffe0", "vgate-obdlink"])
def test_layouts_recognised_by_uuid(layout: str) -> None:
    services, _ = gatt(layout)
    assert find_layout(services).name == layout


def test_unknown_clone_falls_back_to_notify_and_write() -> None:
    services, notify = gatt("other")
    found = find_layout(services)
    assert found.name == "generic" and found.notify == notify


def test_no_serial_service_is_a_clear_error() -> None:
    with pytest.raises(TransportError, match="FFF0"):
        find_layout(FakeServices([]))


def test_registry_builds_ble_lazily() -> None:
    assert parse_port("ble:OBDII").target == "OBDII"
    t = create(parse_port("ble:AA:BB:CC:DD:EE:FF"))
    assert isinstance(t, BleTransport) and t.target == "AA:BB:CC:DD:EE:FF"


def transport_for(sim: Simulator, layout: str, mtu: int = 23) -> tuple[BleTransport, list[FakeBleakClient]]:
    clients: list[FakeBleakClient] = []

    def factory(target: str, on_disconnect: Any) -> FakeBleakClient:
        services, notify = gatt(layout)
        client = FakeBleakClient(sim, services, notify, mtu_size=mtu, on_disconnect=on_disconnect)
        clients.append(client)
        return client

    return BleTransport("OBDII", client_factory=factory), clients


@pytest.mark.parametrize("layout", ["fff0", "ffe0", "vgate-obdlink", "other"])
async def test_session_over_ble(sim: Simulator, layout: str) -> None:
    sim.command({"hold_speed": 64.0})
    transport, clients = transport_for(sim, layout)
    await transport.open()
    try:
        session = Elm327Session(transport)
        info = await session.initialize()
        assert info.protocol == "6"
        readings = await session.read_pids(0x7E8, [0x0C, 0x0D, 0x05, 0x04, 0x10, 0x11])
        assert {r.name: r.value for r in readings}["speed"] == 64.0
        # the 17-character VIN comes back as several notifications, reassembled
        assert await session.read_vin() == "JHMCM56557C404453"
        assert all(len(w) <= 20 for w in clients[0].writes)
    finally:
        await transport.close()


async def test_long_write_is_split_to_mtu(sim: Simulator) -> None:
    transport, clients = transport_for(sim, "fff0", mtu=23)
    await transport.open()
    try:
        line = b"ATFCSD30000000000000\r"  # 21 bytes, one line (the write guard allows one per write)
        await transport.write(line)
        assert [len(w) for w in clients[0].writes] == [20, 1]
        assert b"".join(clients[0].writes) == line
    finally:
        await transport.close()


async def test_dropped_link_is_a_transport_error(sim: Simulator) -> None:
    transport, clients = transport_for(sim, "fff0")
    await transport.open()
    clients[0].drop()
    with pytest.raises(TransportError, match="dropped"):
        await transport.read_until(b">", 1.0)
    with pytest.raises(TransportError):
        await transport.write(b"ATI\r")
    await transport.close()


async def test_poller_reconnects_after_ble_drop(sim: Simulator) -> None:
    from gateway.config import AdapterConfig, PollingConfig
    from gateway.poller import Poller
    from tests.link.helpers import Collected, run_until

    sim.command({"hold_speed": 25.0})
    made: list[FakeBleakClient] = []

    def new_transport() -> BleTransport:
        transport, _ = transport_for(sim, "vgate-obdlink")
        original = transport._factory
        assert original is not None

        def factory(target: str, on_disconnect: Any) -> FakeBleakClient:
            client = original(target, on_disconnect)
            made.append(client)
            return client

        transport._factory = factory
        return transport

    from gateway.daemon import session_factory

    got = Collected()
    adapter, polling = AdapterConfig(port="ble:OBDII", timeout_s=1.0, reconnect_max_s=0.5), PollingConfig(pids=["0D"])
    poller = Poller(
        adapter,
        polling,
        sessions=session_factory(adapter, polling, None, transport_factory=new_transport),
        publish=got.publish,
        as_fast_as_possible=True,
    )
    dropped_at: list[int] = []

    def drop_then_recover() -> bool:
        speeds = len(got.named("speed"))
        if not dropped_at and speeds >= 5:
            made[-1].drop()  # the radio link goes away while the poller runs
            dropped_at.append(speeds)
        return bool(dropped_at) and speeds >= dropped_at[0] + 5

    assert await run_until(poller, drop_then_recover, 20)
    assert len(made) == 2  # one reconnect
    assert any(not ls.adapter_connected for ls in got.links)
    assert {s.value for s in got.named("speed")} == {25.0}
