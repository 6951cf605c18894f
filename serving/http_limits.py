"""Limits on what one HTTP client can cost the feed API: the size of a request head (request line + headers) and
the time a client may take to send it.

uvicorn's httptools protocol (the fast one, and what ``ltvfeed serve`` runs) has neither: a client sending a
100 MB header is buffered in full, and a client trickling its head holds its connection for ever. This protocol
counts the bytes of each request head as they arrive and answers ``431`` and closes as soon as the head exceeds
:data:`MAX_HEAD_BYTES`; a head not complete within :data:`HEAD_TIMEOUT_S` (from its first byte, or from the
connection for the first request) gets ``408`` and the connection closes. Both answers cost microseconds, so one
hostile client never stalls the others on the event loop. Use it with ``uvicorn.run(..., http=...)``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 32 * 1024  # nginx's default large_client_header_buffers is 4 x 8 KiB
HEAD_TIMEOUT_S = 10.0

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bounded request head (size and time); see the module docstring."""

    max_head_bytes = MAX_HEAD_BYTES
    head_timeout_s = HEAD_TIMEOUT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._awaiting_head = True
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._awaiting_head:
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes:
                self._reject(431, f"request head over {self.max_head_bytes} bytes")
                return
            if self._head_timer is None:
                self._arm_head_timer()
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._awaiting_head = False
        self._head_bytes = 0
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._awaiting_head = True  # the next bytes on this connection start a new head

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._awaiting_head:
            self._reject(408, f"request head not received within {self.head_timeout_s:g} s")

    def _reject(self, status: int, message: str) -> None:
        self._cancel_head_timer()
        self._awaiting_head = False
        if self.transport.is_closing():
            return
        self.logger.warning("rejected a request from %s: %s", self.client, message)
        body = message.encode("ascii")
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, _REASONS[status], len(body), body)
        )
        self.transport.close()
