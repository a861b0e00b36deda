import socket
import subprocess
import sys

import pytest

from streamrec.broker import EmbeddedBroker
from streamrec.cli import build_parser
from streamrec.errors import BrokerError


def test_every_subcommand_parses():
    p = build_parser()
    for argv in (
        ["broker"],
        ["topics", "create"],
        ["worker"],
        ["replay", "--limit", "5"],
        ["data", "fetch"],
        ["repartition", "--source", "x"],
        ["bench-scorer", "--json"],
        ["recs", "alice"],
        ["demo"],
        ["bench", "--json"],
    ):
        assert callable(p.parse_args(argv).func)


def test_worker_in_production_without_a_key_exits_with_a_clear_message():
    env = {"STREAMREC_MODE": "production", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "streamrec", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "STREAMREC_PSEUDONYM_KEY" in proc.stderr


def test_broker_refuses_a_taken_port_with_a_clear_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(BrokerError, match=f"port {port} .* already taken"):
            EmbeddedBroker(port).start()


def test_a_port_whose_last_connection_is_in_time_wait_is_free_again_at_once():
    from streamrec.broker import port_is_free

    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = server.accept()
    conn.close()  # the server side closes first: its end of the connection waits in TIME_WAIT
    server.close()
    client.close()
    assert port_is_free(port)  # a restarted broker may bind it (it uses SO_REUSEADDR)
    with socket.socket() as busy, pytest.raises(OSError):
        busy.bind(("127.0.0.1", port))  # what the check did before: refused for ~60 s
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", port))
        busy.listen(1)
        assert not port_is_free(port)  # a listener still there is still refused
