"""The network worker: the one process that reads the network, and all it may do.

``python -m gateway.privsep.net CONFIG`` is started by the monitor
(``privsep.monitor``) as root with two descriptors: the listening socket and
its end of the monitor's socket. It imports what it runs, locks itself down
(``privsep.lockdown``: the unprivileged account, no capability, no_new_privs, a
seccomp filter), and serves SSH with asyncssh. It holds no host key, no policy,
no audit key and no Docker socket; it asks the monitor (``privsep.link``):

- ``sign``: the host key's signature over each exchange hash (the first one of
  a connection is its session identifier, which the monitor now knows);
- ``open`` / ``closed``: each connection, with its socket (the monitor reads the
  peer's address from the socket itself, and audits);
- ``key`` / ``auth``: whether a key may try, and the client's signature, which
  the monitor verifies over a session identifier it signed before it names a
  principal;
- ``session``: each session channel's request with its descriptors (a PTY's
  slave, or three pipes) and a control socket, on which the monitor decides,
  audits, runs and records it exactly as for the OpenSSH door
  (``dispatch.door_server``), and ends with ``status N SIGNAL``.

This process relays bytes between the channel and those descriptors.
"""

from __future__ import annotations

import asyncio
import concurrent.futures.thread  # noqa: F401 - asyncssh's option loading uses it; imported while readable
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

import asyncssh
from asyncssh.channel import SSHChannel

from gateway import oplog, sshfast
from gateway.algorithms import Algorithms
from gateway.dispatch import wire
from gateway.events import RefusalKind
from gateway.forwarding import RefusesForwarding, prohibited, server_options
from gateway.privsep.link import Link, MonitorKey
from gateway.privsep.lockdown import lock_down
from gateway.sshhooks import (
    install_kex_hooks,
    install_quickack,
    install_refusal_hooks,
    requested_subsystem,
    skip_packet_logging,
)

CHUNK = 65536
BACKLOG = 128
HIGH_WATER = 256 * 1024
SFTP_PROGRAM = "internal-sftp"  # what sshd passes for a subsystem: the door's session refuses it alike


class Net:
    """What every connection of this worker shares."""

    def __init__(self, link: Link, config: dict[str, Any]) -> None:
        self.link = link
        self.algorithms = Algorithms(tuple(config["ciphers"]), tuple(config["macs"]), tuple(config["kex"]))
        self.lean: tuple[str, ...] = tuple(config["lean"])
        self.max_sessions = int(config["max_sessions"])


class NetServer(RefusesForwarding, asyncssh.SSHServer):
    """One connection: authentication by the monitor, session channels handed to it."""

    def __init__(self, net: Net) -> None:
        self.net = net
        self.conn_id = ""
        self.principal = ""
        self.sessions = 0
        self._conn: asyncssh.SSHServerConnection | None = None

    def refused(self, kind: RefusalKind, **fields: Any) -> None:
        """The monitor records it (against this connection)."""
        if self.conn_id:
            with contextlib.suppress(OSError, ValueError):
                self.net.link.call("refused", self.conn_id, kind.value, json.dumps(fields, default=str))

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        """Tell the monitor (with the socket); it admits or turns away."""
        self._conn = conn
        install_kex_hooks(conn, self.net.algorithms.offer)
        if self.net.lean and sshfast.available(conn):
            if "send" in self.net.lean:
                sshfast.install_lean_sends(conn)
            if "receive" in self.net.lean:
                sshfast.install_lean_receive(conn)
        install_quickack(conn)
        sock = conn.get_extra_info("socket")
        try:
            reply = self.net.link.call("open", fds=[sock.fileno()] if sock is not None else [])
        except (OSError, ValueError):  # the monitor gone: nothing is admitted
            reply = []
        if reply[:1] != ["ok"] or len(reply) < 2:
            conn.close()
            return
        self.conn_id = reply[1]
        conn.validate_public_key = self._validate  # type: ignore[method-assign]

    def connection_lost(self, exc: Exception | None) -> None:
        """Tell the monitor the connection ended."""
        if self.conn_id:
            with contextlib.suppress(OSError, ValueError):
                self.net.link.call("closed", self.conn_id, str(exc) if exc else "")

    def begin_auth(self, username: str) -> bool:
        """Authentication is always required."""
        return True

    def public_key_auth_supported(self) -> bool:
        """Public keys (and certificates) are the only way in."""
        return True

    async def _validate(self, username: str, key_data: bytes, msg: bytes, signature: bytes) -> bool:
        """asyncssh's check of a key and its signature, done by the monitor instead."""
        conn = self._conn
        if conn is None or not self.conn_id:
            return False
        if not msg:
            reply = self.net.link.call("key", self.conn_id, username, key_data.hex())
        else:
            session_id = getattr(conn, "_session_id", None)  # private: asyncssh pinned (sshhooks.TESTED)
            if not isinstance(session_id, bytes):  # another asyncssh: no one gets in, rather than anyone
                oplog.log().error("asyncssh keeps no session id where this worker reads it; login refused")
                return False
            reply = self.net.link.call("auth", self.conn_id, session_id.hex(), msg.hex(), signature.hex())
            if reply[:1] == ["ok"] and len(reply) > 1:
                self.principal = reply[1]
        return reply[:1] == ["ok"]

    def session_requested(self) -> Any:
        """A session channel, its requests refused or kept as for ``serve``'s own."""
        if self._conn is None:
            return False
        if self.sessions >= self.net.max_sessions:
            self.refused(RefusalKind.SESSION_LIMIT, limit=self.net.max_sessions)
            raise prohibited("gateway: too many sessions on this connection")
        self.sessions += 1
        chan = self._conn.create_server_channel(encoding=None)
        install_refusal_hooks(chan, self.refused)
        if "channel" in self.net.lean and sshfast.channel_ready(chan):
            sshfast.install_lean_channel(chan)
        return chan, Relay(self)


class Relay(asyncssh.SSHServerSession[bytes]):
    """One session channel, relayed to the descriptors of the monitor's session."""

    def __init__(self, server: NetServer) -> None:
        self.server = server
        self.chan: asyncssh.SSHServerChannel[bytes] | None = None
        self.command: str | None = None
        self.term: str | None = None
        self.size = (80, 24, 0, 0)
        self.stdin = -1
        self.outputs: dict[int, Callable[[bytes], None]] = {}
        self.control: socket.socket | None = None
        self.pending = bytearray()
        self.status: list[str] | None = None
        self.paused = False

    # requests before the session starts
    def connection_made(self, chan: SSHChannel[bytes]) -> None:
        """Keep the channel."""
        assert isinstance(chan, asyncssh.SSHServerChannel)
        self.chan = chan

    def pty_requested(self, term_type: str, term_size: tuple[int, int, int, int], term_modes: Any) -> bool:
        """A PTY: the monitor gets its slave."""
        self.term, self.size = term_type, term_size
        return True

    def shell_requested(self) -> bool:
        """No command: the session says how to name one."""
        return True

    def exec_requested(self, command: str) -> bool:
        """The command, for the monitor to parse and decide."""
        self.command = command
        return True

    def subsystem_requested(self, subsystem: str) -> bool:
        """A subsystem (sftp among them): the session refuses it with a line."""
        name = requested_subsystem(subsystem) or ""
        self.command = SFTP_PROGRAM if name == "sftp" else name
        return True

    def session_started(self) -> None:
        """Hand the session to the monitor."""
        chan = self.chan
        assert chan is not None
        loop = asyncio.get_running_loop()
        size = ""
        if self.term is not None:  # a socket, not a PTY pair: the monitor is told the size (no tty layer)
            master_sock, slave_sock = socket.socketpair()
            master, slave = master_sock.detach(), slave_sock.detach()
            size = " ".join(str(max(0, min(int(v), 65535))) for v in self.size)
            theirs, self.stdin = (slave, slave, slave), master
            self.outputs = {master: sshfast.channel_writer(chan, None)}
        else:
            (in_r, in_w), (out_r, out_w), (err_r, err_w) = os.pipe(), os.pipe(), os.pipe()
            theirs, self.stdin = (in_r, out_w, err_w), in_w
            self.outputs = {
                out_r: sshfast.channel_writer(chan, None),
                err_r: sshfast.channel_writer(chan, asyncssh.EXTENDED_DATA_STDERR),
            }
        mine, other = socket.socketpair()
        env = json.dumps(dict(chan.get_environment()))  # what the refusal hooks accepted; checked again
        try:
            reply = self._call(
                "session",
                self.server.conn_id,
                self.server.principal,
                self.command or "",
                self.term or "",
                env,
                size,
                fds=[other.fileno(), *dict.fromkeys(theirs)],
            )
        finally:
            other.close()
            for fd in set(theirs):
                os.close(fd)
        if reply[:1] != ["ok"]:
            mine.close()
            self._refused(" ".join(reply[1:2]) or "gateway: this session was refused; nothing was run")
            return
        mine.setblocking(False)
        self.control = mine
        for fd in (self.stdin, *self.outputs):
            os.set_blocking(fd, False)
        for fd in self.outputs:
            loop.add_reader(fd, self._readable, fd)
        loop.add_reader(mine.fileno(), self._control_readable, bytearray())

    def _call(self, *fields: str, fds: list[int]) -> list[str]:
        """A question to the monitor; a refusal when it cannot be asked."""
        try:
            return self.server.net.link.call(*fields, fds=fds)
        except (OSError, ValueError):
            return [
                "refused",
                "gateway: the gateway is not answering; nothing was run (try again in a moment)",
            ]

    def _refused(self, line: str) -> None:
        if self.chan is not None:
            self.chan.write_stderr((line + "\r\n").encode())
            self.chan.exit(1)

    # the client's side
    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        """Into the session's stdin (a PTY's master, or a pipe)."""
        if datatype is not None or self.stdin < 0:
            return
        self.pending += data
        self._flush()

    def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self.pending and self.stdin >= 0:
            try:
                written = os.write(self.stdin, self.pending)
            except BlockingIOError:
                if self.chan is not None:
                    self.chan.pause_reading()
                loop.add_writer(self.stdin, self._writable)
                return
            except OSError:
                self.pending.clear()
                return
            del self.pending[:written]

    def _writable(self) -> None:
        asyncio.get_running_loop().remove_writer(self.stdin)
        if self.chan is not None:
            self.chan.resume_reading()
        self._flush()

    def eof_received(self) -> bool:
        """The client's EOF: the pipe's end (a terminal has none); the channel stays open for the output."""
        if self.term is None and self.stdin >= 0 and not self.pending:
            os.close(self.stdin)
            self.stdin = -1
        return True

    def terminal_size_changed(self, width: int, height: int, pixwidth: int, pixheight: int) -> None:
        """A resize: on the PTY, and told to the monitor (as the door does on SIGWINCH)."""
        if self.term is not None and self.stdin >= 0:
            self._tell(
                "winch", *(str(max(0, min(int(v), 65535))) for v in (width, height, pixwidth, pixheight))
            )

    def signal_received(self, signal: str) -> None:
        """A signal for the session's process: the monitor decides what reaches it."""
        self._tell("signal", signal)

    def break_received(self, msec: int) -> bool:
        """A break: passed on, as ``serve``'s own sessions take it."""
        self._tell("break")
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        """The client went away: a hang-up for the monitor, and everything closed here."""
        self._tell("hangup")
        self._close()

    def pause_writing(self) -> None:
        """The client is slow: stop reading the session's output."""
        self.paused = True
        loop = asyncio.get_running_loop()
        for fd in self.outputs:
            loop.remove_reader(fd)

    def resume_writing(self) -> None:
        """Read the session's output again."""
        self.paused = False
        loop = asyncio.get_running_loop()
        for fd in self.outputs:
            loop.add_reader(fd, self._readable, fd)

    # the session's side
    def _readable(self, fd: int) -> None:
        try:
            data = os.read(fd, CHUNK)
        except BlockingIOError:
            return
        except OSError:  # EIO: a PTY whose every slave is closed
            data = b""
        if data and self.chan is not None:
            with contextlib.suppress(asyncssh.Error, OSError):
                self.outputs[fd](data)
            return
        asyncio.get_running_loop().remove_reader(fd)
        del self.outputs[fd]
        if fd != self.stdin:
            os.close(fd)
        self._maybe_exit()

    def _control_readable(self, buffer: bytearray) -> None:
        control = self.control
        if control is None:
            return
        try:
            chunk = control.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        buffer += chunk
        while True:
            try:
                found = wire.decode(bytes(buffer))
            except ValueError:
                found, chunk = None, b""
            if found is None:
                break
            message, rest = found
            buffer[:] = rest
            if message[:1] == ["status"]:
                self.status = message
            elif message[:1] == ["refused"]:
                self._refused(message[1] if len(message) > 1 else "gateway: refused")
        if not chunk:
            asyncio.get_running_loop().remove_reader(control.fileno())
            if self.status is None:
                self.status = ["status", "255", ""]
            self._maybe_exit()

    def _maybe_exit(self) -> None:
        """Once the status has come and every output is read to its end: the client's exit status."""
        if self.status is None or self.outputs or self.chan is None:
            return
        chan, self.chan = self.chan, None
        _, code, *rest = [*self.status, "", ""]
        with contextlib.suppress(asyncssh.Error, OSError):
            if rest[0]:
                chan.exit_with_signal(rest[0])
            else:
                chan.exit(int(code) if code.isdigit() else 255)
        self._close()

    def _tell(self, *fields: str) -> None:
        if self.control is not None:
            with contextlib.suppress(OSError):
                self.control.send(wire.encode(*fields))

    def _close(self) -> None:
        loop = asyncio.get_running_loop()
        for fd in list(self.outputs):
            loop.remove_reader(fd)
            with contextlib.suppress(OSError):
                os.close(fd)
        self.outputs.clear()
        if self.stdin >= 0:
            loop.remove_writer(self.stdin)
            with contextlib.suppress(OSError):
                os.close(self.stdin)
            self.stdin = -1
        if self.control is not None:
            loop.remove_reader(self.control.fileno())
            self.control.close()
            self.control = None


async def serve(config: dict[str, Any], listener: socket.socket, link: Link) -> None:
    """Serve SSH on *listener* until SIGTERM or the monitor goes away."""
    net = Net(link, config)
    host_key = MonitorKey(asyncssh.import_public_key(config["host_key"]), link)
    acceptor = await asyncssh.listen(
        sock=listener,
        server_factory=lambda: NetServer(net),
        server_host_keys=[host_key],
        **server_options(net.algorithms, float(config["login_timeout"])),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, acceptor.close)  # the monitor drains: no new connections

    def monitor_readable() -> None:
        if link.gone():  # the monitor ended: so does this worker
            stop.set()

    loop.add_reader(link.sock.fileno(), monitor_readable)
    link.call("ready")
    await stop.wait()
    acceptor.close()


def main() -> None:
    """Entry point: ``python -m gateway.privsep.net CONFIG`` (JSON), started by the monitor."""
    config = json.loads(sys.argv[1])
    link = Link(socket.socket(fileno=int(config["link_fd"])))
    oplog.configure(str(config.get("log_format", "json")))
    skip_packet_logging()
    lock_down(int(config["uid"]), int(config["gid"]))
    listener = link.take_listener()  # bound by the monitor; listening only here, locked down
    listener.listen(BACKLOG)
    asyncio.run(serve(config, listener, link))


if __name__ == "__main__":
    main()
