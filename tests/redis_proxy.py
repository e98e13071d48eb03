"""A TCP proxy in front of Redis that can lose a reply: the command runs, its answer never arrives.

`LossyProxy` forwards bytes both ways, reading the RESP frames as they pass so it knows which reply
answers which command. Armed with `lose_reply_once(match)`, the first command for which `match`
is true is forwarded as usual; the proxy then waits for the server's reply to it (proof that the
server ran it), forwards the replies before it (a pipeline's earlier commands) and closes the
client's connection instead of forwarding that reply. The client sees a connection that failed
after it sent its command: exactly the fault after which a resend may run a command twice. With
``hang=True`` the connection stays open and answers nothing more: the client's deadline runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

__all__ = ["LossyProxy", "evalsha_of", "frame_end"]

#: a command as the client sent it: its arguments, the name first
Command = list[bytes]
Match = Callable[[Command], bool]

_AGGREGATES = {ord("*"): 1, ord("~"): 1, ord(">"): 1, ord("%"): 2, ord("|"): 2}


def frame_end(data: bytes | bytearray, start: int = 0) -> int | None:
    """Where the RESP frame starting at `start` ends, or None when it is not all there yet."""
    line_end = data.find(b"\r\n", start)
    if line_end < 0:
        return None
    kind, header = data[start], bytes(data[start + 1 : line_end])
    pos = line_end + 2
    if kind in (ord("$"), ord("="), ord("!")):  # bulk string (or verbatim/blob error): length + body
        length = int(header)
        if length < 0:
            return pos
        return pos + length + 2 if len(data) >= pos + length + 2 else None
    if kind in _AGGREGATES:
        count = int(header)
        for _ in range(max(count, 0) * _AGGREGATES[kind]):
            end = frame_end(data, pos)
            if end is None:
                return None
            pos = end
        return pos
    return pos  # a one-line frame: + - : _ , # (


def _command(frame: bytes) -> Command:
    """The arguments of a request frame (an array of bulk strings)."""
    args: Command = []
    line_end = frame.find(b"\r\n")
    pos = line_end + 2
    for _ in range(int(frame[1:line_end])):
        line_end = frame.find(b"\r\n", pos)
        length = int(frame[pos + 1 : line_end])
        args.append(frame[line_end + 2 : line_end + 2 + length])
        pos = line_end + 2 + length + 2
    return args


def evalsha_of(sha: str) -> Match:
    """Matches the calls of the script whose SHA1 is `sha`."""
    wanted = sha.encode()
    return lambda args: len(args) > 1 and args[0].upper() == b"EVALSHA" and args[1] == wanted


class LossyProxy:
    """Forwards loopback TCP to a Redis server; loses one chosen reply on demand."""

    def __init__(self, upstream_host: str, upstream_port: int, *, password: str = "") -> None:
        self.upstream = (upstream_host, upstream_port)
        #: the upstream's password, passed through by clients that connect with `url`
        self.password = password
        self.port = 0
        self._server: asyncio.Server | None = None
        self._match: Match | None = None
        self._hang = False
        #: set once the armed command ran and its reply was dropped
        self.lost = asyncio.Event()
        #: the commands whose reply was dropped
        self.lost_commands: list[Command] = []
        self._pumps: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for pump in list(self._pumps):
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)

    def lose_reply_once(self, match: Match, *, hang: bool = False) -> None:
        """Drop the connection instead of the reply to the next command `match` accepts (or, with
        `hang`, keep it open and silent)."""
        self.lost.clear()
        self._match = match
        self._hang = hang

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        me = asyncio.current_task()
        assert me is not None
        self._pumps.add(me)
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        #: the number of the command (on this connection, from 0) whose reply is to be lost
        doomed: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        requests = asyncio.create_task(self._requests(reader, up_writer, doomed))
        try:
            await self._replies(up_reader, writer, doomed)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass  # stop(): end quietly
        finally:
            requests.cancel()
            await asyncio.gather(requests, return_exceptions=True)
            for w in (writer, up_writer):
                w.close()
                with contextlib.suppress(ConnectionError, OSError):
                    await w.wait_closed()
            self._pumps.discard(me)

    async def _requests(
        self, reader: asyncio.StreamReader, up: asyncio.StreamWriter, doomed: asyncio.Future[int]
    ) -> None:
        """Client -> server, whole commands at a time, spotting the armed one."""
        buffer = bytearray()
        sent = 0
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while chunk := await reader.read(65536):
                buffer += chunk
                pos = 0
                while (end := frame_end(buffer, pos)) is not None:
                    frame = bytes(buffer[pos:end])
                    if self._match is not None and not doomed.done() and self._match(_command(frame)):
                        self._match = None
                        self.lost_commands.append(_command(frame))
                        doomed.set_result(sent)
                    sent += 1
                    pos = end
                if pos:
                    up.write(bytes(buffer[:pos]))
                    del buffer[:pos]
                    await up.drain()
            up.close()  # the client hung up: so does the server, which ends the reply pump

    async def _replies(
        self, up: asyncio.StreamReader, writer: asyncio.StreamWriter, doomed: asyncio.Future[int]
    ) -> None:
        """Server -> client, one reply at a time; the doomed one ends the connection instead."""
        buffer = bytearray()
        answered = 0
        while chunk := await up.read(65536):
            buffer += chunk
            pos = 0
            while (end := frame_end(buffer, pos)) is not None:
                if doomed.done() and answered == doomed.result():
                    writer.write(bytes(buffer[:pos]))  # the replies before it, then nothing
                    await writer.drain()
                    self.lost.set()
                    if self._hang:  # silent until the client gives up and hangs up
                        while await up.read(65536):
                            pass
                    return
                answered += 1
                pos = end
            if pos:
                writer.write(bytes(buffer[:pos]))
                del buffer[:pos]
                await writer.drain()
