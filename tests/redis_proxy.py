"""A TCP proxy in front of a Redis server that loses replies after the server ran the command."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable


class ReplyDroppingProxy:
    """A TCP proxy in front of a Redis server that, once armed, takes the server's next replies
    and closes the client's connection instead of passing them on: the server ran the command,
    the client never hears of it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.to_drop = 0
        self.dropped = 0
        self.on_drop: Callable[[], object] | None = None
        """Called as a reply is dropped (say, to flush the server's script cache as a restart would)."""
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.Task[None]] = set()

    @property
    def listen_port(self) -> int:
        """The port clients connect to instead of the server's."""
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.listen_port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for link in list(self._links):
            link.cancel()
        await asyncio.gather(*self._links, return_exceptions=True)

    async def _serve(self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter) -> None:
        link = asyncio.current_task()
        assert link is not None
        self._links.add(link)
        server_in, server_out = await asyncio.open_connection("127.0.0.1", self.port)

        async def requests() -> None:
            while data := await client_in.read(65536):
                server_out.write(data)
                await server_out.drain()

        async def replies() -> None:
            while data := await server_in.read(65536):
                if self.to_drop:
                    self.to_drop -= 1
                    self.dropped += 1
                    if self.on_drop is not None:
                        self.on_drop()
                    return
                client_out.write(data)
                await client_out.drain()

        try:
            forward = asyncio.ensure_future(requests())
            await replies()
            forward.cancel()
        finally:
            for writer in (client_out, server_out):
                writer.close()
            self._links.discard(link)


@contextlib.asynccontextmanager
async def reply_dropping_proxies(ports: Iterable[int]) -> AsyncIterator[dict[int, ReplyDroppingProxy]]:
    """A started proxy in front of the server at each of ``ports`` (by that port), all stopped
    on leaving."""
    async with contextlib.AsyncExitStack() as started:
        proxies: dict[int, ReplyDroppingProxy] = {}
        for port in ports:
            proxies[port] = proxy = ReplyDroppingProxy(port)
            await proxy.start()
            started.push_async_callback(proxy.stop)
        yield proxies
