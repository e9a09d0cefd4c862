"""gateway/channel.py: the typed events and pump_received (a channel with only receive())."""

from __future__ import annotations

import asyncio

from gateway.channel import Received, Resize, Signal, clamped, pump_received


class _Typed:
    def __init__(self, items: list[Received]) -> None:
        self.items = items

    async def receive(self, n: int = 65536, /) -> Received:
        await asyncio.sleep(0)
        return self.items.pop(0) if self.items else b""


def test_pump_received_hands_every_event_in_order_then_the_end() -> None:
    seen: list[Received] = []
    items: list[Received] = [b"a", Resize(80, 24), Signal("INT"), b"b"]

    async def main() -> None:
        await pump_received(_Typed(list(items)), seen.append)  # type: ignore[arg-type]

    asyncio.run(main())
    assert seen == [*items, b""]


def test_pump_received_waits_for_a_handler_that_cannot_take_more() -> None:
    order: list[str] = []

    async def main() -> None:
        held: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def handler(received: Received) -> asyncio.Future[None] | None:
            order.append(f"got {received!r}")
            if received == b"first":
                asyncio.get_running_loop().call_later(
                    0.05, lambda: (order.append("released"), held.set_result(None))
                )
                return held
            return None

        await pump_received(_Typed([b"first", b"second"]), handler)  # type: ignore[arg-type]

    asyncio.run(main())
    assert order == ["got b'first'", "released", "got b'second'", "got b''"]


def test_sizes_are_clamped_to_16_bits() -> None:
    assert clamped((-1, 70000, 5, 2**40)) == (0, 0xFFFF, 5, 0xFFFF)
