import os
import signal
import subprocess
import sys
import threading
import time

import pytest

pytestmark = pytest.mark.integration


def _descendants(pid: int) -> set[int]:
    rows = subprocess.run(["ps", "-eo", "pid=,ppid="], capture_output=True, text=True).stdout
    children: dict[int, list[int]] = {}
    for row in rows.split("\n"):
        if row.strip():
            child, parent = map(int, row.split())
            children.setdefault(parent, []).append(child)
    out, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.add(c)
            todo.append(c)
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_demo_stops_every_process_on_interrupt(tmp_path, sig):
    # SIGINT ignored on entry, as for a background job of a non-interactive shell.
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # the demo's own temp dir lands here
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamrec", "demo", "--limit", "3000"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    # The output is read to its end on a thread: a pipe nobody reads blocks the demo
    # (and the processes that share its stdout) once it is full.
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "worker ready" in line:
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    ready.wait(120)
    started = _descendants(proc.pid)
    assert len(started) >= 2, "".join(lines[-40:])  # the broker and the worker
    proc.send_signal(sig)
    try:
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            code = None
        assert code == 130, "".join(lines[-40:])
        # The demo returns once they are gone; a short wait covers only the reaping of a
        # process whose parent exited first (it then shows as alive for a moment).
        deadline = time.monotonic() + 5
        while [pid for pid in started if _alive(pid)] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [pid for pid in started if _alive(pid)] == [], "".join(lines[-40:])
    finally:  # a failed run leaves nothing behind for the tests after it
        for pid in [proc.pid, *started]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
