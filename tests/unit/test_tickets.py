"""The door's tickets: single use, short-lived, bounded in number."""

from __future__ import annotations

from gateway.dispatch.tickets import TicketBook


def test_a_ticket_is_good_once() -> None:
    book = TicketBook()
    token = book.mint("betty", "SHA256:x", (123, 456))
    ticket = book.redeem(token)
    assert ticket is not None and ticket.principal == "betty" and ticket.monitor == (123, 456)
    assert book.redeem(token) is None


def test_an_expired_ticket_is_worth_nothing() -> None:
    book = TicketBook(lifetime=-1)
    assert book.redeem(book.mint("betty", "SHA256:x", None)) is None


def test_the_book_keeps_at_most_its_limit() -> None:
    book = TicketBook(limit=2)
    first = book.mint("a", "f", None)
    book.mint("b", "f", None)
    book.mint("c", "f", None)
    assert book.redeem(first) is None  # the oldest went first
