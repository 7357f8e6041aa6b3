"""Run the real service with uvicorn on a loopback port, in a thread of the test process."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from indexer.config import Settings
from indexer.encoder import Encoder
from indexer.pipeline import ingest
from indexer.runtime import open_runtime
from retriever.api import Retriever
from retriever.service import create_app
from tests.helpers import CHUNK_SIZE


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """``with LiveServer(app) as url:`` serves ``app`` on 127.0.0.1 (a socket bound to a free port)."""

    def __init__(self, app: Any) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        for _ in range(400):  # up to 20 s
            if self.server.started or not self.thread.is_alive():
                break
            time.sleep(0.05)
        if not self.server.started:
            raise RuntimeError("the service did not start")
        return self.url

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
        self.sock.close()


def open_retriever(settings: Settings, encoder: Encoder, paths: list[Any] | None = None) -> Retriever:
    """A retriever on a fresh collection (``paths`` ingested first), as ``retriever serve`` opens one."""
    runtime = open_runtime(settings, "serve", encoder=encoder)
    if paths:
        ingest(paths, settings, encoder, runtime.store, progress=False)
    return Retriever(settings, encoder=encoder, store=runtime.store)


def serve(settings: Settings, encoder: Encoder, paths: list[Any] | None = None, **kwargs: Any) -> LiveServer:
    return LiveServer(create_app(open_retriever(settings, encoder, paths), **kwargs))


def service_config(path: Path, model_dir: Path, store: Path, collection: str, extra: str = "") -> Path:
    """A config file for ``retriever serve`` on an embedded store with the test model (``extra``: more TOML)."""
    path.write_text(
        f'[model]\nname = "{model_dir}"\ndevice = "cpu"\n[chunking]\nchunk_size = {CHUNK_SIZE}\n'
        f'chunk_overlap = 16\n[qdrant]\npath = "{store}"\n[collection]\nname = "{collection}"\n{extra}'
    )
    return path


def wait_ready(base: str, server: subprocess.Popen[Any]) -> None:
    """Wait up to 60 s for a ``retriever serve`` process to answer /readyz (it imports torch, loads the model)."""
    for _ in range(600):
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if server.poll() is not None:
            err = server.communicate()[1] if server.stderr else ""
            raise RuntimeError(f"retriever serve exited with {server.returncode}: {err}")
        time.sleep(0.1)
    raise RuntimeError("retriever serve did not become ready in 60 s")
