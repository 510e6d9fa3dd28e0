"""The plain-hex fast path of the answer classifier gives the same Answer as the general path (issue 19)."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.elm327.responses import Kind, _classify, classify

PLAIN = "0123456789ABCDEFabcdef :\r\n"
SENT = st.sampled_from(["010C", "010D0C040510111", "0100", "0902", "03", "22F190", "", "ATRV", "STI", "01 0C"])


def _sent_s(sent: str) -> str:
    return sent.strip().replace(" ", "").upper()


@settings(max_examples=400)
@given(block=st.text(alphabet=PLAIN, max_size=120), sent=SENT)
@example(block="010C\r41 0C 1A F8\r\r", sent="010C")  # an echo, then data
@example(block="00F\r0:410D000C0370\r1:0400053A100050\r2:11000000000000\r\r", sent="010D0C040510111")
@example(block="12 :34\r41 0C\r", sent="010C")  # noise among data
@example(block="\r\n \r", sent="010C")  # nothing
@example(block="010C\r", sent="010C")  # the echo alone
def test_the_fast_path_agrees_with_the_general_one(block: str, sent: str) -> None:
    raw = block.encode("ascii")
    assert classify(raw, sent.encode("ascii")) == _classify(raw, _sent_s(sent))


def test_chip_messages_never_take_the_fast_path() -> None:
    messages = ((b"NO DATA", Kind.NO_DATA), (b"STOPPED", Kind.STOPPED), (b"?", Kind.UNKNOWN_COMMAND),
                (b"CAN ERROR", Kind.BUS_ERROR), (b"ELM327 v1.5", Kind.RESET), (b"BUFFER FULL", Kind.BUS_ERROR))
    for message, kind in messages:
        assert classify(message + b"\r\r", b"010C\r").kind is kind
