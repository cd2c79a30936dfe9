"""A TCP proxy on 127.0.0.1 in front of a PostgreSQL server, that can stop forwarding:
the network split of a worker from its database, with every connection left open (as a
dead link leaves them), so that only timeouts can tell; or silence only the connections
open now, as a NAT or a firewall that forgets them does, while new ones pass."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from sqlalchemy.engine import URL


class Proxy:
    def __init__(self, target: URL) -> None:
        query = dict(target.query)
        self._socket = (
            f"{query['host']}/.s.PGSQL.{query.get('port', 5432)}" if "host" in query else None
        )
        self._address = (target.host or "127.0.0.1", target.port or 5432)
        self.forwarding = asyncio.Event()
        self.forwarding.set()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._silenced_before = 0
        self._opened = 0
        self._closed = False

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        self._closed = True
        if self._server is not None:
            self._server.close()
        for pipe in self._pipes:
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    def silence_open_connections(self) -> None:
        """The connections open now never pass another byte and are never closed; new
        connections pass as before."""
        self._silenced_before = self._opened

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._opened += 1
        number = self._opened
        try:
            if self._socket is not None:
                up_reader, up_writer = await asyncio.open_unix_connection(self._socket)
            else:
                up_reader, up_writer = await asyncio.open_connection(*self._address)
        except OSError:  # the target is gone: so is this connection
            writer.close()
            return
        if self._closed:  # accepted while the proxy was closing: nothing may pass, or leak
            for open_writer in (writer, up_writer):
                open_writer.close()
            return
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            pipe = asyncio.create_task(self._pipe(number, source, sink))
            self._pipes.add(pipe)
            pipe.add_done_callback(self._pipes.discard)

    async def _pipe(
        self, number: int, source: asyncio.StreamReader, sink: asyncio.StreamWriter
    ) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while data := await source.read(65536):
                await self.forwarding.wait()  # split: bytes wait here, connections stay open
                if number <= self._silenced_before:
                    await asyncio.Event().wait()  # silenced: until the proxy closes
                sink.write(data)
                await sink.drain()
        sink.close()


@contextlib.asynccontextmanager
async def proxy_to(target: URL) -> AsyncIterator[tuple[Proxy, URL]]:
    """A proxy and the URL of `target`'s database through it."""
    proxy = Proxy(target)
    port = await proxy.start()
    try:
        yield proxy, target.set(host="127.0.0.1", port=port, query={})
    finally:
        await proxy.close()
