"""A TCP relay that can cut connections midway: a network that drops, for the SSH tests.

``CuttingRelay(port)`` listens on 127.0.0.1 and a free port and relays every connection
to ``127.0.0.1:port`` byte for byte. ``cut_after(nbytes, connections=1)`` arms it: each
of the next `connections` connections is closed abruptly (both sides, with a TCP reset)
once `nbytes` have passed through it in either direction together; ``connections=None``
cuts every one from then on. ``cuts`` counts the connections it cut.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading

__all__ = ["CuttingRelay"]

BLOCK = 64 * 1024


class CuttingRelay:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._limit: int | None = None
        self._left: int | None = 0
        self.cuts = 0
        self._stopped = False
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def start(self) -> CuttingRelay:
        self._thread.start()
        return self

    def cut_after(self, nbytes: int, connections: int | None = 1) -> None:
        with self._lock:
            self._limit, self._left = nbytes, connections

    def _arm(self) -> int | None:
        """The byte limit for a new connection (None: relay it whole)."""
        with self._lock:
            if self._limit is None or self._left == 0:
                return None
            if self._left is not None:
                self._left -= 1
            return self._limit

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client, self._arm()), daemon=True).start()

    def _relay(self, client: socket.socket, limit: int | None) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        except OSError:
            client.close()
            return
        passed = 0
        peers = {client: upstream, upstream: client}
        try:
            while True:
                ready, _, _ = select.select(list(peers), [], [], 60)
                if not ready:
                    return
                for sock in ready:
                    data = sock.recv(BLOCK)
                    if not data:
                        return
                    if limit is not None and passed + len(data) > limit:
                        peers[sock].sendall(data[: limit - passed])
                        with self._lock:
                            self.cuts += 1
                        for s in peers:  # a reset, not a goodbye
                            s.setsockopt(
                                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                            )
                        return
                    peers[sock].sendall(data)
                    passed += len(data)
        except OSError:
            return
        finally:
            for s in peers:
                with contextlib.suppress(OSError):
                    s.close()

    def stop(self) -> None:
        self._stopped = True
        self._listener.close()

    def __enter__(self) -> CuttingRelay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
