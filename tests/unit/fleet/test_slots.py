"""Fleet slots on session advisory locks: each slot once, even for sessions of one process."""

from __future__ import annotations

import asyncio

import pytest

from gateway.fleet.down import Full
from gateway.fleet.slots import Slots


async def test_a_process_cannot_take_a_slot_it_already_holds(dsn: str) -> None:
    slots, other = Slots(dsn), Slots(dsn)
    try:
        first, second = await slots.take("betty", 2, 3), await slots.take("betty", 2, 3)
        assert first.held != second.held
        with pytest.raises(Full, match="2 sessions per principal"):
            await other.take("betty", 2, 3)
        dan = await other.take("dan", 2, 3)
        with pytest.raises(Full, match="3 sessions in the fleet"):
            await other.take("erin", 2, 3)
        await slots.give(first)
        assert (await other.take("betty", 2, 3)).held == first.held
        await other.give(dan)
    finally:
        await slots.close()
        await other.close()


async def test_a_closed_connection_gives_every_slot_back(dsn: str) -> None:
    gone, other = Slots(dsn), Slots(dsn)
    try:
        await gone.take("betty", 1, None)
        with pytest.raises(Full):
            await other.take("betty", 1, None)
        await gone.close()
        for _ in range(50):  # the server frees them as the connection's backend ends (milliseconds)
            try:
                assert (await other.take("betty", 1, None)).held == (("principal:betty", 0),)
                break
            except Full:
                await asyncio.sleep(0.02)
        else:
            raise AssertionError("the closed connection's slot was not given back")
    finally:
        await other.close()
