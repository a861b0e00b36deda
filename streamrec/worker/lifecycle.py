"""The worker process's life: Faust credentials, a stop with a time limit, and the
messages for the ways it has to end (the broker lost its data, Faust crashed)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import faust
from faust.exceptions import ConsistencyError
from faust.worker import Worker as FaustWorker

from streamrec.settings import Settings

log = logging.getLogger(__name__)


class StoppingWorker(FaustWorker):
    """Faust's worker, with a time limit on stopping.

    Faust's shutdown waits for the broker (acks, offset commits, the producer's
    flush): with the broker gone it took minutes, and SIGTERM seemed ignored.
    After a stop signal a watchdog thread ends the process once `stop_within_s`
    have passed; events not acked by then are processed again by the next worker.
    """

    stop_within_s: float = 8.0
    exit_code: Callable[[], int] = staticmethod(lambda: 0)

    def _schedule_shutdown(self, signum: signal.Signals) -> None:
        if not getattr(self, "_watchdog_started", False):
            self._watchdog_started = True
            threading.Thread(target=self._watchdog, name="stop-watchdog", daemon=True).start()
        super()._schedule_shutdown(signum)

    def _watchdog(self) -> None:
        time.sleep(self.stop_within_s)
        log.error(
            "the worker did not stop within %.0f s (STREAMREC_SHUTDOWN_TIMEOUT_S); exiting now; "
            "events not acked yet will be processed again",
            self.stop_within_s,
        )
        logging.shutdown()
        os._exit(self.exit_code() or 1)


def run_app(
    app: faust.App,
    settings: Settings,
    exit_code: Callable[[], int],
    final: Callable[[], Awaitable[None]],
) -> int:
    """Run `app` in the foreground until SIGINT/SIGTERM, awaiting `final` before it
    shuts down; returns the process's exit status (`exit_code()` when the worker
    chose to stop, 3 when the broker lost its data, 1 when Faust crashed)."""

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def _final(_app: Any, **kwargs: Any) -> None:  # pragma: no cover - shutdown path
        await final()

    worker = StoppingWorker(
        app,
        loglevel=settings.log_level,
        quiet=True,
        redirect_stdouts=False,
        override_logging=True,
    )
    worker.stop_within_s = settings.shutdown_timeout_s
    worker.exit_code = exit_code
    with contextlib.suppress(SystemExit):  # Faust exits 0 whatever happened
        worker.execute_from_commandline()
    crash = crash_reason(app)
    if isinstance(crash, ConsistencyError):
        log.critical(broker_lost_data(str(crash).replace("\n", " ").strip(), settings))
        return 3
    if crash is not None and not exit_code():
        log.critical("the worker crashed: %r", crash)
        return 1
    return exit_code()


def crash_reason(app: Any) -> BaseException | None:
    """Why Faust stopped on its own, if it did (the app, or its table recovery)."""
    for service in (app, getattr(app.tables, "recovery", None)):
        reason = getattr(service, "crash_reason", None)
        if reason is not None:
            return cast(BaseException, reason)
    return None


def broker_lost_data(evidence: str, s: Settings) -> str:
    """What to say (and do) when the broker no longer has what this worker saw."""
    what = (
        "the embedded broker keeps everything in memory, so a restart of it loses every topic"
        if s.is_embedded
        else "the topics were deleted or recreated"
    )
    return (
        f"the broker lost its data: {evidence} ({what}). The profiles in "
        f"{Path(s.data_dir) / 'faust'} belong to the old data. To start over: stop every "
        "worker, move that directory aside, run `streamrec topics create`, start the "
        "workers again"
    )


def faust_credentials(s: Settings) -> Any:
    if s.kafka_security_protocol == "PLAINTEXT":
        return None
    ssl_context = None
    if "SSL" in s.kafka_security_protocol:
        import ssl

        ssl_context = ssl.create_default_context(cafile=s.kafka_ssl_cafile or None)
    if s.kafka_security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=s.kafka_sasl_username,
            password=s.kafka_sasl_password.get(),
            mechanism=s.kafka_sasl_mechanism,
            ssl_context=ssl_context,
        )
    return faust.SSLCredentials(ssl_context)
