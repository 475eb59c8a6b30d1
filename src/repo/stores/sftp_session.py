"""The SSH side of the ``sftp://`` store: one connection, a pool of SFTP channels, and the
translation of SSH and SFTP failures into `repo.errors`.

The code above the store is synchronous and threaded; asyncssh is asynchronous. A
`Session` owns one event loop, run in a daemon thread of its own, and the threads that
use the store submit coroutines to it and wait for their results. The SSH connection is
opened on first use and reused by every operation: each concurrent operation takes an
SFTP channel from a pool over that one connection (a channel is cheap; a handshake is
not). A connection that breaks is dropped whole, and the next operation opens a new one.

Host keys are checked against ``known_hosts`` (``ssh_known_hosts``, else
``~/.ssh/known_hosts``) and an unknown host is refused, never accepted. The client key is
``ssh_key_file`` when set, else the SSH agent and the user's default keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import asyncssh

from ..errors import ConfigError, NotFoundError, StoreError
from ..urls import SSH_PORT

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from concurrent.futures import Future

__all__ = [
    "Session",
    "SshTarget",
    "is_transient",
    "translate",
]

T = TypeVar("T")

#: SFTP channels kept open for reuse (more may be open at once; the rest are closed).
POOL_SIZE = 8
CONNECT_TIMEOUT = 30.0
#: A dead connection is noticed after this many seconds without an answer to keepalives.
KEEPALIVE_INTERVAL = 15
KEEPALIVE_COUNT = 4


@dataclass(frozen=True, slots=True)
class SshTarget:
    """Whom to log in as, where, and with what."""

    user: str | None
    host: str
    port: int
    key_file: Path | None = None
    known_hosts: Path | None = None

    @property
    def where(self) -> str:
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port != SSH_PORT else ""
        return f"{user}{self.host}{port}"

    def keyscan_hint(self) -> str:
        port = f"-p {self.port} " if self.port != SSH_PORT else ""
        known = self.known_hosts or "~/.ssh/known_hosts"
        return (
            f"check the server's key fingerprint, then add it: "
            f"ssh-keyscan {port}{self.host} >> {known}"
        )


class Session:
    """One event loop thread and one SSH connection (opened lazily) with an SFTP pool."""

    def __init__(self, target: SshTarget) -> None:
        self.target = target
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"repo-sftp-{target.host}", daemon=True
        )
        self._thread.start()
        self._conn: asyncssh.SSHClientConnection | None = None
        self._idle: list[asyncssh.SFTPClient] = []
        self._connecting: asyncio.Lock | None = None
        self._closed = False
        #: May the account run commands (md5sum, cat)? None: not asked yet
        #: (`repo.stores.sftp_exec.runs_commands`).
        self.commands: bool | None = None

    # -- running coroutines from the caller's thread -----------------------------------

    def submit(self, coro: Awaitable[T]) -> Future[T]:
        if self._closed:
            raise StoreError(f"the SFTP store on {self.target.where} was closed")
        return asyncio.run_coroutine_threadsafe(_awaited(coro), self._loop)

    def run(self, coro: Awaitable[T]) -> T:
        return self.submit(coro).result()

    def loop_call(self, fn: Callable[..., object], *args: object, **kwargs: object) -> None:
        """Call `fn` on the loop's thread (soon); nothing once the session is closed."""
        if not self._closed:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(functools.partial(fn, *args, **kwargs))

    def call(self, fn: Callable[[asyncssh.SFTPClient], Awaitable[T]]) -> T:
        """Run `fn` with a pooled SFTP channel; the channel goes back to the pool after,
        or, if the connection broke, the connection is dropped."""
        return self.run(self._with_channel(fn))

    async def _with_channel(self, fn: Callable[[asyncssh.SFTPClient], Awaitable[T]]) -> T:
        sftp = await self.checkout()
        broken = True
        try:
            result = await fn(sftp)
            broken = False
            return result
        except BaseException as exc:
            broken = is_transient(exc)
            raise
        finally:
            self.checkin(sftp, broken=broken)

    # -- the pool ----------------------------------------------------------------------

    async def checkout(self) -> asyncssh.SFTPClient:
        while self._idle:
            sftp = self._idle.pop()
            if self._conn is not None and not _is_closing(self._conn):
                return sftp
        conn = await self.connection()
        return await conn.start_sftp_client()

    def checkin(self, sftp: asyncssh.SFTPClient, *, broken: bool = False) -> None:
        """Called on the loop: keep `sftp` for reuse, or drop the connection if broken."""
        if broken:
            self._drop()
        elif len(self._idle) < POOL_SIZE and not self._closed:
            self._idle.append(sftp)
        else:
            sftp.exit()

    async def connection(self) -> asyncssh.SSHClientConnection:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._conn is None or _is_closing(self._conn):
                self._conn = await self._connect()
            return self._conn

    async def _connect(self) -> asyncssh.SSHClientConnection:
        t = self.target
        known_hosts = t.known_hosts or Path.home() / ".ssh" / "known_hosts"
        if not known_hosts.is_file():
            raise ConfigError(
                f"no known_hosts file at {known_hosts}: the host key of {t.host} cannot be "
                f"checked, and an unchecked host is never trusted",
                hint=t.keyscan_hint(),
            )
        options: dict[str, Any] = {
            "username": t.user or (),
            "known_hosts": str(known_hosts),
            "connect_timeout": CONNECT_TIMEOUT,
            "keepalive_interval": KEEPALIVE_INTERVAL,
            "keepalive_count_max": KEEPALIVE_COUNT,
            "config": None,  # this store's settings, not ~/.ssh/config's
        }
        if ciphers := _preferred_ciphers():
            options["encryption_algs"] = ciphers
        if t.key_file is not None:
            options["client_keys"] = [str(t.key_file)]
            options["agent_path"] = None
        try:
            return await asyncssh.connect(t.host, t.port, **options)
        except (TimeoutError, OSError, ValueError, asyncssh.Error) as exc:
            # ValueError: a known_hosts or key file asyncssh cannot parse.
            raise connect_error(t, exc) from exc

    def drop(self) -> None:
        """Forget the connection (after a failure): the next operation opens a new one."""
        if not self._closed:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._drop)

    def _drop(self) -> None:
        self._idle.clear()
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.abort()

    # -- the end -----------------------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return

        async def shut() -> None:
            conn = self._conn
            self._drop()
            if conn is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.wait_closed(), 5)

        with contextlib.suppress(Exception):
            self.run(shut())
        self._closed = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()


#: AES-GCM first: with AES instructions, transfers through asyncssh ran 1.4-1.6 times
#: as fast as with its first choice, chacha20-poly1305 (docs/sftp-store.md).
_FAST_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


def _preferred_ciphers() -> list[str]:
    """asyncssh's default ciphers with AES-GCM moved to the front (the server still picks
    from what both sides offer, so a server without them is unaffected)."""
    from asyncssh.encryption import get_default_encryption_algs

    rest = [a.decode() for a in get_default_encryption_algs()]
    return [*(c for c in _FAST_CIPHERS if c in rest), *(c for c in rest if c not in _FAST_CIPHERS)]


async def _awaited(coro: Awaitable[T]) -> T:
    return await coro


def _is_closing(conn: asyncssh.SSHClientConnection) -> bool:
    transport = conn.get_extra_info("socket")
    return transport is None or conn.is_closed()


# -- errors ---------------------------------------------------------------------------


def is_transient(exc: BaseException) -> bool:
    """A broken connection: an idempotent operation may be tried again on a new one."""
    if isinstance(exc, asyncssh.SFTPError):
        return exc.code in (asyncssh.FX_CONNECTION_LOST, asyncssh.FX_NO_CONNECTION)
    if isinstance(exc, (asyncssh.PermissionDenied, asyncssh.HostKeyNotVerifiable)):
        return False
    if isinstance(exc, (asyncssh.ConnectionLost, asyncssh.DisconnectError)):
        return True
    if isinstance(exc, asyncssh.ChannelOpenError):
        return exc.code == asyncssh.OPEN_CONNECT_FAILED
    return isinstance(exc, (ConnectionResetError, BrokenPipeError, asyncio.IncompleteReadError))


def connect_error(t: SshTarget, exc: BaseException) -> StoreError:
    where = t.where
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return StoreError(
            f"the host key of {t.host} (port {t.port}) is not in known_hosts, or differs "
            "from the one there; the connection was refused",
            hint=t.keyscan_hint(),
        )
    if isinstance(exc, asyncssh.PermissionDenied):
        key = f"the key {t.key_file}" if t.key_file else "the SSH agent's and default keys"
        return StoreError(
            f"SSH login to {where} failed: the server refused {key}",
            hint="add the public key to the account's ~/.ssh/authorized_keys, or set "
            "ssh_key_file to the key that is there",
        )
    if isinstance(exc, ConnectionRefusedError):
        return StoreError(
            f"cannot connect to {where}: connection refused",
            hint=f"check that an SSH server is running on {t.host} port {t.port}",
        )
    if isinstance(exc, socket.gaierror):
        return StoreError(
            f"cannot connect to {where}: unknown host {t.host!r}",
            hint="check the host name in the sftp:// store URL, and this host's DNS",
        )
    if isinstance(exc, (asyncio.TimeoutError, asyncssh.TimeoutError)):
        return StoreError(
            f"cannot connect to {where}: no answer in {CONNECT_TIMEOUT:.0f} s",
            hint=f"check that {t.host} is reachable on port {t.port} from this host",
        )
    if (
        isinstance(exc, asyncssh.KeyImportError | OSError)
        and not isinstance(exc, ConnectionError)
        and t.key_file is not None
    ):
        return StoreError(
            f"cannot use the SSH key {t.key_file}: {_reason(exc)}",
            hint="check ssh_key_file: a private key file, readable, without a passphrase "
            "(or load it into ssh-agent and leave ssh_key_file unset)",
        )
    return StoreError(f"cannot connect to {where}: {_reason(exc)}", hint="check the sftp:// URL")


def translate(exc: Exception, what: str, target: SshTarget) -> Exception:
    """`exc`, from an operation on the server (`what`: "write of 'key'"), as a repo error."""
    if isinstance(exc, (StoreError, ConfigError, NotFoundError)):
        return exc
    if isinstance(exc, asyncssh.SFTPError):
        if exc.code == asyncssh.FX_NO_SUCH_FILE:
            return NotFoundError(f"{what} failed: no such file on {target.where}")
        if exc.code == asyncssh.FX_PERMISSION_DENIED:
            return StoreError(
                f"{what} failed: permission denied on {target.where}",
                hint=f"check that the SSH user may read and write the store's directory "
                f"on {target.host}",
            )
        if is_transient(exc):
            return StoreError(
                f"{what} failed: the connection to {target.where} was lost",
                hint="check the network and the SSH server, then retry",
            )
        return StoreError(f"{what} failed on {target.where}: {_reason(exc)}")
    if is_transient(exc):
        return StoreError(
            f"{what} failed: the connection to {target.where} was lost ({_reason(exc)})",
            hint="check the network and the SSH server, then retry",
        )
    if isinstance(exc, asyncssh.Error | OSError):
        return StoreError(f"{what} failed on {target.where}: {_reason(exc)}")
    return exc


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncssh.Error):
        text = exc.reason
    elif isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split()) or type(exc).__name__
