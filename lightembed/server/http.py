"""uvicorn's HTTP protocol (h11 or httptools) with the two limits uvicorn has no setting for: a deadline for a
request's headers (a silent or slow client is disconnected after `header_timeout` seconds) and a cap on their
size, both parser-independent. Everything uvicorn can do itself is left to its settings (`limit_concurrency`
for connections, `timeout_keep_alive` between requests, `h11_max_incomplete_event_size`); the body's deadline
and the Content-Length + Transfer-Encoding refusal are in the app (lightembed.server.app), which sees both
parsers' requests the same way.
"""

from __future__ import annotations

from typing import Any

HEADER_END = b"\r\n\r\n"


def base_protocol(http: str) -> type:
    """uvicorn's protocol class for --http (auto: httptools when installed, else h11)."""
    if http in ("auto", "httptools"):
        try:
            from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

            return HttpToolsProtocol
        except ImportError:
            if http == "httptools":
                raise ImportError('--http httptools needs httptools: pip install httptools') from None
    from uvicorn.protocols.http.h11_impl import H11Protocol

    return H11Protocol


def hardened_protocol(http: str, header_timeout: float, max_header_bytes: int) -> type:
    """A subclass of uvicorn's protocol for `http` that closes a connection whose next request's headers are not
    complete within `header_timeout` seconds (from the connection's start or the previous response), and answers
    431 to headers over `max_header_bytes`."""
    base: Any = base_protocol(http)

    class HardenedProtocol(base):
        _header_timer: Any = None
        _header_bytes = 0
        _tail = b""

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._expect_headers()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._expect_headers()

        def _expect_headers(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            self._header_bytes, self._tail = 0, b""
            self._header_timer = self.loop.call_later(header_timeout, self._headers_late)

        def _headers_pending(self) -> bool:
            # No request in progress (none yet, or the last one answered; a pipelined one counts as started).
            idle = self.cycle is None or self.cycle.response_complete
            return idle and self._header_bytes >= 0

        def _headers_late(self) -> None:
            if self._headers_pending() and not self.transport.is_closing():
                self.logger.info("Closed a connection whose request headers did not arrive within %g s.", header_timeout)
                self.transport.close()

        def data_received(self, data: bytes) -> None:
            if self._headers_pending():
                seen = self._tail + data
                end = seen.find(HEADER_END)
                size = self._header_bytes + (len(data) if end < 0 else end + len(HEADER_END) - len(self._tail))
                if size > max_header_bytes:
                    self._refuse_large_headers()
                    return
                if end < 0:
                    self._header_bytes, self._tail = size, seen[-3:]
                else:
                    self._header_bytes = -1  # complete: the rest is body or the next request, the parser's job
            super().data_received(data)

        def _refuse_large_headers(self) -> None:
            body = f"Request headers over {max_header_bytes} bytes.".encode()
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
                + f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode() + body
            )
            self.transport.close()

    HardenedProtocol.__name__ = f"Hardened{base.__name__}"
    return HardenedProtocol
