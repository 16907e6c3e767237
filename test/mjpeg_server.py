"""A tiny MJPEG-over-HTTP camera on 127.0.0.1 for reconnection tests: a live source that can
disappear (stop()) and come back (start()) on the same port, read by OpenCV like a network camera."""
from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MjpegCamera:
    def __init__(self, frames: list[np.ndarray], port: int | None = None, fps: float = 20.0):
        self.jpegs = [cv2.imencode(".jpg", f)[1].tobytes() for f in frames]
        self.port = port or free_port()
        self.fps = fps
        self.server = None
        self.alive = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def start(self) -> None:
        cam = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                k = 0
                try:
                    while cam.alive.is_set():
                        jpg = cam.jpegs[k % len(cam.jpegs)]
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg))
                        self.wfile.write(jpg + b"\r\n")
                        k += 1
                        time.sleep(1.0 / cam.fps)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.alive.set()
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.alive.clear()
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
