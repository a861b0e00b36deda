"""A local stack of processes: embedded broker, topics, N workers, M scorers.

Used by `streamrec demo`, `streamrec bench` and the integration tests, so they
all run the pipeline the way an operator does: `streamrec worker` processes
against a Kafka-protocol broker.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from types import TracebackType

from streamrec.broker import EmbeddedBroker, free_port
from streamrec.client import EventProducer, RecommendationReader
from streamrec.errors import BrokerError
from streamrec.settings import Settings
from streamrec.tools.admin import create_topics

PROBE_USER = "__streamrec_probe__"


#: Stacks started by this process, for the signal handler.
_running: list[LocalStack] = []
#: The signal that interrupted this process, if any.
interrupted: int | None = None


def interrupt_on_signals(grace_s: float = 10.0) -> None:
    """On SIGINT / SIGTERM: signal every child to stop, then raise KeyboardInterrupt.

    Installed explicitly because a process started in the background by a
    non-interactive shell inherits SIGINT as *ignored*, and SIGTERM (``timeout``,
    ``docker stop``) would otherwise kill us and orphan the children. The
    children are told to stop from the handler itself because kafka-python's
    network layer catches BaseException, so the KeyboardInterrupt can be
    swallowed; `with LocalStack(...)` then waits for them on the way out. If
    the main thread has not finished within `grace_s` (stuck in a client call to
    the broker it just stopped), a watchdog reaps the children and exits 130.
    """

    def _watchdog() -> None:
        time.sleep(grace_s)
        for stack in list(_running):
            stack.stop()
        print("streamrec: interrupted; every process it started has been stopped", file=sys.stderr)
        os._exit(130)

    def _handle(signum: int, frame: object) -> None:
        global interrupted
        first = interrupted is None
        interrupted = signum
        for stack in list(_running):
            stack.terminate()
        if first:
            threading.Thread(target=_watchdog, name="interrupt-watchdog", daemon=True).start()
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGINT, _handle)
    signal.signal(signal.SIGTERM, _handle)


class LocalStack:
    def __init__(
        self,
        settings: Settings,
        *,
        workers: int = 1,
        scorers: int = 0,
        log_dir: Path,
        broker: EmbeddedBroker | None = None,
        start_broker: bool = True,
    ) -> None:
        self.settings = settings
        self.n_workers = workers
        self.n_scorers = scorers
        self.scorers: list[subprocess.Popen[bytes]] = []
        self.log_dir = Path(log_dir)
        self.broker = broker
        self.start_broker = start_broker and broker is None
        self.workers: list[subprocess.Popen[bytes]] = []
        #: `streamrec serve` replicas (started on demand: `start_serve`).
        self.serves: list[subprocess.Popen[bytes]] = []
        #: Held while stopping: the interrupt watchdog's `stop` waits for the main thread's.
        self._stopping = threading.RLock()

    def start(self) -> LocalStack:
        _running.append(self)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if self.start_broker:
            self.broker = EmbeddedBroker(free_port(), log_path=self.log_dir / "broker.log").start()
        if self.broker is not None:
            self.settings = self.settings.with_overrides(kafka_bootstrap=self.broker.bootstrap)
        create_topics(self.settings)
        for _ in range(self.n_scorers):
            self.start_scorer()
        for _ in range(self.n_workers):
            self.start_worker()
        return self

    def start_worker(self, **overrides: object) -> subprocess.Popen[bytes]:
        """One more worker (its log: worker-<n>.log), with settings `overrides` if any."""
        settings = self.settings.with_overrides(**overrides) if overrides else None
        proc = self._spawn("worker", len(self.workers), settings)
        self.workers.append(proc)
        return proc

    def start_scorer(self) -> subprocess.Popen[bytes]:
        proc = self._spawn("scorer", len(self.scorers))
        self.scorers.append(proc)
        return proc

    def start_serve(self, port: int, **overrides: object) -> subprocess.Popen[bytes]:
        """A `streamrec serve` replica on 127.0.0.1:`port` (its log: serve-<port>.log)."""
        settings = self.settings.with_overrides(serve_port=port, **overrides)
        proc = self._spawn("serve", port, settings)
        self.serves.append(proc)
        return proc

    def _spawn(
        self, command: str, i: int, settings: Settings | None = None
    ) -> subprocess.Popen[bytes]:
        env = {**os.environ, **(settings or self.settings).to_env()}
        log = open(self.log_dir / f"{command}-{i}.log", "ab")  # noqa: SIM115 - owned by the child
        return subprocess.Popen(
            [sys.executable, "-m", "streamrec", command],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us; we stop children in order
        )

    @property
    def children(self) -> list[subprocess.Popen[bytes]]:
        return self.workers + self.scorers + self.serves

    def wait_ready(self, timeout_s: float = 60.0) -> float:
        """Send a probe search and wait for its recommendation; returns seconds waited."""
        t0 = time.monotonic()
        reader = RecommendationReader(self.settings, from_beginning=False)
        try:
            with EventProducer(self.settings) as producer:
                ev = producer.track("search", PROBE_USER, query="probe", event_id=uuid.uuid4().hex)
            rec = reader.wait_for(
                PROBE_USER, timeout_s=timeout_s, until=reader.answers(ev.event_id)
            )
        finally:
            reader.close()
        if rec is None:
            dead = [p.args for p in self.workers if p.poll() is not None]
            raise BrokerError(
                f"the worker did not answer within {timeout_s:.0f} s "
                f"(exited: {dead or 'none'}); see {self.log_dir}/worker-*.log"
            )
        return time.monotonic() - t0

    def stop_worker(self, proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def terminate(self) -> None:
        """Ask every child to stop; returns at once (safe in a signal handler)."""
        for proc in self.children:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        if self.start_broker and self.broker is not None and self.broker.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self.broker.proc.terminate()

    def stop(self) -> None:
        """Stop every child and the broker; returns once they are gone. Safe to call
        twice and from two threads: the second call waits for the first.

        The stack leaves `_running` only when it is stopped. It used to leave first,
        so the interrupt watchdog, firing while a slow stop was under way, found
        nothing to wait for and exited with the broker still running (seen in CI
        on a loaded machine)."""
        with self._stopping:
            for proc in self.children:
                if proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGTERM)
            # One deadline for all of them: waiting 20 s for each in turn let a stack of a
            # worker and a scorer that both hang on a gone broker take over 40 s to stop.
            deadline = time.monotonic() + 20.0
            for proc in self.children:
                self.stop_worker(proc, max(0.1, deadline - time.monotonic()))
            self.workers.clear()
            self.scorers.clear()
            self.serves.clear()
            if self.start_broker and self.broker is not None:
                self.broker.stop()
            with contextlib.suppress(ValueError):
                _running.remove(self)

    def __enter__(self) -> LocalStack:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
