"""A PostgreSQL that is starting up or shutting down, on the wire: every connection is refused.

A real PostgreSQL answers a connection during start-up or shutdown with a FATAL ErrorResponse of
SQLSTATE 57P03 (``cannot_connect_now``), which asyncpg raises as ``CannotConnectNowError``. The
shared test server cannot be stopped to show it (others use it), so this listener speaks just
enough of the protocol to give that same answer: it declines TLS, reads the startup message, and
sends the error PostgreSQL sends. Everything on our side — asyncpg, SQLAlchemy, the stores, the
app — is the real code; only the database's answer is fixed.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading

#: The protocol's request code for TLS, sent before the startup message.
SSL_REQUEST = 80877103
STARTING_UP = "the database system is starting up"
SHUTTING_DOWN = "the database system is shutting down"


def error_response(sqlstate: str, message: str) -> bytes:
    fields = b"".join(
        key + value.encode() + b"\0"
        for key, value in ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", sqlstate), (b"M", message))
    )
    fields += b"\0"
    return b"E" + struct.pack("!I", len(fields) + 4) + fields


class RefusingPostgres:
    """A listener on 127.0.0.1 answering every connection with 57P03 ``message``, in a thread."""

    def __init__(self, message: str) -> None:
        self.message = message
        self.refused = 0
        self._loop = asyncio.new_event_loop()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                (length,) = struct.unpack("!I", await reader.readexactly(4))
                body = await reader.readexactly(length - 4)
                if struct.unpack("!I", body[:4])[0] != SSL_REQUEST:
                    break
                writer.write(b"N")  # no TLS here; the client goes on in plain text
                await writer.drain()
            writer.write(error_response("57P03", self.message))
            await writer.drain()
            self.refused += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def __enter__(self) -> RefusingPostgres:
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, sock=self._sock), self._loop
        )
        self._server = started.result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            self._server.close()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
