"""An HTTP proxy on 127.0.0.1 in front of an S3 server (moto's), that makes every request
take a set time more and can fail a share of them: a bucket far away, for the benchmarks and
the tests, with nothing leaving the machine.

    proxy = LatencyProxy("http://127.0.0.1:5000", latency_s=0.030, faults=0.05, seed=1)
    proxy.start()          # in a thread of its own; proxy.url is what clients talk to
    ...
    proxy.stop()

Each request gets a connection of its own (the response says `Connection: close`), so the
delay is paid once per request, as a round trip to a distant bucket is, whatever the client
does with its connections. The delay is added before the request is sent on. A failed
request is one of: `503 SlowDown` and `500 InternalError` (S3's own XML errors, which S3
clients retry), a connection reset with no answer, or an answer cut short (its head and half
of its body, then the connection closed). `counts` says what was done, by kind.

`python benchmarks/latency_proxy.py UPSTREAM [--latency-ms 30] [--faults 0.05]` runs one in
the foreground and prints its URL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import socket
import struct
import threading
from collections import Counter

FAULTS = ("503", "500", "reset", "short")
_ERRORS = {
    "503": ("503 Slow Down", "SlowDown", "Please reduce your request rate."),
    "500": ("500 Internal Server Error", "InternalError", "We encountered an internal error."),
}
_MAX_HEAD = 64 << 10


class LatencyProxy:
    def __init__(
        self,
        upstream: str,
        latency_s: float = 0.030,
        faults: float = 0.0,
        seed: int | None = None,
        kinds: tuple[str, ...] = FAULTS,
    ) -> None:
        host, _, port = upstream.removeprefix("http://").rstrip("/").partition(":")
        self.upstream = (host, int(port or 80))
        self.latency_s = latency_s
        self.faults = faults
        self.kinds = kinds
        self.counts: Counter[str] = Counter()
        self._random = random.Random(seed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # ------------------------------------------------------------------ running
    def start(self) -> str:
        """Serve in a thread of its own; returns the proxy's URL."""
        ready = threading.Event()

        def serve() -> None:
            loop = self._loop = asyncio.new_event_loop()
            self._server = loop.run_until_complete(
                asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=1024)
            )
            port = self._server.sockets[0].getsockname()[1]
            self.url = f"http://127.0.0.1:{port}"
            ready.set()
            loop.run_forever()

        self._thread = threading.Thread(target=serve, name="latency-proxy", daemon=True)
        self._thread.start()
        ready.wait(30)
        return self.url

    def stop(self) -> None:
        loop, server = self._loop, self._server
        if loop is None or server is None:
            return

        async def close() -> None:
            server.close()
            await server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(30)

    def __enter__(self) -> LatencyProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ one request
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        try:
            await self._request(head, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            with contextlib.suppress(ConnectionError, OSError):
                writer.close()

    async def _request(
        self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        lines = head[:-4].split(b"\r\n")
        headers = [
            (k.strip().lower(), v.strip()) for k, _, v in (h.partition(b":") for h in lines[1:])
        ]
        fields = dict(headers)
        if fields.get(b"expect", b"").lower() == b"100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # the body comes to us first
            await writer.drain()
        body = await _read_body(reader, fields)
        await asyncio.sleep(self.latency_s)
        fault = self._fault()
        self.counts[fault or "ok"] += 1
        if fault in _ERRORS:
            status, code, message = _ERRORS[fault]
            xml = (
                f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
                f"<Message>{message}</Message></Error>"
            ).encode()
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: application/xml\r\n"
                f"Content-Length: {len(xml)}\r\nConnection: close\r\n\r\n".encode()
                + xml
            )
            await writer.drain()
            return
        if fault == "reset":
            sock = writer.get_extra_info("socket")
            if sock is not None:  # a RST, not a clean close
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return
        kept = [lines[0]] + [
            h for h in lines[1:] if h.partition(b":")[0].strip().lower() not in _HOP_HEADERS
        ]
        request = b"\r\n".join([*kept, b"Connection: close", b"", b""]) + body
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        try:
            up_writer.write(request)
            await up_writer.drain()
            response = await up_reader.read()  # upstream closes after its answer
        finally:
            up_writer.close()
        response = _closing(response)
        if fault == "short":
            split = response.find(b"\r\n\r\n") + 4
            response = response[: split + max(0, (len(response) - split) // 2)]
        writer.write(response)
        await writer.drain()

    def _fault(self) -> str | None:
        if self.faults and self._random.random() < self.faults:
            return self._random.choice(self.kinds)
        return None


# Headers about this connection, not the request: the proxy sets its own.
_HOP_HEADERS = frozenset({b"connection", b"keep-alive", b"expect", b"proxy-connection"})


async def _read_body(reader: asyncio.StreamReader, fields: dict[bytes, bytes]) -> bytes:
    length = fields.get(b"content-length")
    if length is not None:
        return await reader.readexactly(int(length))
    if fields.get(b"transfer-encoding", b"").lower() == b"chunked":
        out = bytearray()
        while True:
            size_line = await reader.readuntil(b"\r\n")
            out += size_line
            size = int(size_line.split(b";")[0], 16)
            out += await reader.readexactly(size + 2)
            if size == 0:
                return bytes(out)
    return b""


def _closing(response: bytes) -> bytes:
    """The upstream's answer, telling the client that this connection ends with it."""
    split = response.find(b"\r\n\r\n")
    if split < 0:
        return response
    lines = response[:split].split(b"\r\n")
    kept = [lines[0]] + [
        h for h in lines[1:] if h.partition(b":")[0].strip().lower() not in _HOP_HEADERS
    ]
    return b"\r\n".join([*kept, b"Connection: close"]) + response[split:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("upstream", help="the S3 server, e.g. http://127.0.0.1:5000")
    parser.add_argument("--latency-ms", type=float, default=30.0)
    parser.add_argument("--faults", type=float, default=0.0, help="share of requests failed")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    proxy = LatencyProxy(args.upstream, args.latency_ms / 1000, args.faults, args.seed)
    print(proxy.start(), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        proxy.stop()


if __name__ == "__main__":
    main()
