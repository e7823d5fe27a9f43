"""A TCP proxy on 127.0.0.1 in front of a real store: its first ``drops`` connections are
dropped (accepted, then reset before a byte of the reply) or, with ``throttle=True``, answered
``503 SlowDown`` as S3 throttles; the others are forwarded to ``target``."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

__all__ = ["FlakyProxy"]


class FlakyProxy:
    """Listen on an ephemeral loopback port; ``dropped`` counts the connections it dropped."""

    def __init__(self, target_port: int, drops: int, *, throttle: bool = False) -> None:
        self.target_port, self.drops, self.dropped, self.throttle = target_port, drops, 0, throttle
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.dropped < self.drops and self.throttle:
                self.dropped += 1
                self._slow_down(conn)
                continue
            if self.dropped < self.drops:
                self.dropped += 1
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()  # RST: "connection reset by peer"
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _slow_down(conn: socket.socket) -> None:
        """Read the request head, answer S3's throttling error, close."""
        conn.settimeout(5)
        with contextlib.suppress(OSError):
            data = b""
            while b"\r\n\r\n" not in data and (chunk := conn.recv(65536)):
                data += chunk
            body = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
                    b"<Message>Please reduce your request rate.</Message></Error>")
            conn.sendall(b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\n"
                         b"Content-Length: " + str(len(body)).encode() +
                         b"\r\nConnection: close\r\n\r\n" + body)
        conn.close()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):  # the other direction closed it already
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()
