"""docker-compose.yml cannot run here (no Docker engine): check it agrees with the code."""

import json
import re
from pathlib import Path

from streamrec.cli import build_parser
from streamrec.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def _env_block(text: str) -> dict[str, str]:
    block, out = False, {}
    for line in text.splitlines():
        if line.startswith("x-streamrec-env"):
            block = True
            continue
        if block:
            if not line.startswith("  "):
                break
            key, _, value = line.strip().partition(":")
            out[key] = value.strip().strip('"')
    return out


def test_compose_env_names_are_real_settings_and_parse():
    env = _env_block((ROOT / "docker-compose.yml").read_text())
    assert env, "x-streamrec-env block not found"
    env["STREAMREC_PSEUDONYM_KEY"] = "a-real-secret-of-at-least-32-bytes"
    s = Settings.from_env(env)  # raises on any unknown or malformed name
    assert s.mode == "production" and not s.is_embedded
    assert s.resolved_pseudonym_key() == b"a-real-secret-of-at-least-32-bytes"


def test_compose_commands_are_cli_subcommands():
    text = (ROOT / "docker-compose.yml").read_text()
    parser = build_parser()
    for argv in (["topics", "create"], ["worker"], ["scorer"], ["serve"]):
        assert f"command: {argv!r}".replace("'", '"') in text
        parser.parse_args(argv)


def test_dockerfile_installs_pinned_torch_before_the_project():
    lines = (ROOT / "Dockerfile").read_text()
    assert lines.index("torch==2.13.0") < lines.index("pip install --no-cache-dir .")


def test_scorer_service_overrides_are_real_settings():
    text = (ROOT / "docker-compose.yml").read_text()
    scorer = text[text.index("  scorer:") : text.index("\nvolumes:")]
    env = _env_block((ROOT / "docker-compose.yml").read_text())
    env["STREAMREC_PSEUDONYM_KEY"] = "a-real-secret"
    for line in scorer.splitlines():
        key, _, value = line.strip().partition(":")
        if key.startswith("STREAMREC_"):
            env[key] = value.strip().strip('"')
    s = Settings.from_env(env)
    assert s.encoder_device == "cuda" and "capabilities: [gpu]" in scorer


def _service(text: str, name: str) -> str:
    start = text.index(f"\n  {name}:\n")
    nxt = re.search(r"\n  [a-z-]+:\n|\nvolumes:", text[start + 3 :])
    assert nxt is not None
    return text[start : start + 3 + nxt.start()]


def test_prometheus_scrapes_the_port_workers_serve_metrics_on():
    text = (ROOT / "docker-compose.yml").read_text()
    worker = _service(text, "worker")
    env = _env_block(text) | {"STREAMREC_PSEUDONYM_KEY": "a-real-secret"}
    for line in worker.splitlines():
        key, _, value = line.strip().partition(":")
        if key.startswith("STREAMREC_"):
            env[key] = value.strip().strip('"')
    s = Settings.from_env(env)
    assert s.metrics_host == "0.0.0.0" and f'"{s.metrics_port}"' in worker
    prom = (ROOT / "deploy/prometheus/prometheus.yml").read_text()
    assert f"port: {s.metrics_port}" in prom and '"worker"' in prom
    for name in ("prometheus", "grafana"):
        for mount in re.findall(r"- \./(deploy/[^:]+):", _service(text, name)):
            assert (ROOT / mount).exists(), mount


def test_grafana_dashboard_queries_only_metrics_a_worker_serves():
    from streamrec.core.monitoring.windows import merge_windows
    from streamrec.prometheus import MetricsState, render
    from streamrec.records import DriftStat, MetricsWindow

    window = MetricsWindow(
        "w", 0, 1000, {"in": 1, "valid": 1, "dlq": 0, "duplicates": 0}, {"view": 1},
        dlq_reasons={"schema": 1}, per_type={"view": {"in": 1, "valid": 1, "dlq": 0}},
        quality={"default": {"lists": 1, "trials": 1, "hits": 1, "ndcg": 1.0, "rr": 1.0,
                             "impressions": 1, "clicks": 1}},
    )  # fmt: skip
    state = MetricsState("w")
    state.add_window(window, merge_windows([window]).summary())
    state.add_drift(DriftStat("w", 1, "ctr", "ADWIN", "s", 0.002, True, 0.1, immediate=True))
    state.add_drift(DriftStat("w", 1, "ctr", "ADWIN", "s", 0.002, False, 0.1))
    state.firing["x"] = "warning"
    served = set(re.findall(r"^(streamrec_[a-z_]+)", render(state).decode(), re.M))
    dash = json.loads((ROOT / "deploy/grafana/dashboards/streamrec.json").read_text())
    used = {
        name
        for panel in dash["panels"]
        for target in panel["targets"]
        for name in re.findall(r"streamrec_[a-z_]+", target["expr"])
    }
    assert used and used <= served, used - served
    # The fleet-wide Prometheus alert rules too.
    rules = (ROOT / "deploy/prometheus/alerts.yml").read_text()
    in_rules = set(re.findall(r"streamrec_[a-z_]+", rules))
    assert in_rules and in_rules <= served, in_rules - served
    import yaml  # transformers' dependency: always installed

    prom = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    assert prom["rule_files"] == ["/etc/prometheus/alerts.yml"]
    groups = yaml.safe_load(rules)["groups"]
    assert all(r["alert"] and r["expr"] and r["labels"]["severity"] for r in groups[0]["rules"])


def test_serve_service_runs_in_production_with_keys_and_keeps_its_store_on_a_volume():
    from streamrec.serve.app import check_access, store_dir

    text = (ROOT / "docker-compose.yml").read_text()
    serve = _service(text, "serve")
    env = _service_env(text, serve)
    env["STREAMREC_API_READ_KEYS"] = "r" * 16
    env["STREAMREC_API_WRITE_KEYS"] = "w" * 16
    env["STREAMREC_SERVE_CORS_ORIGINS"] = ""
    s = Settings.from_env(env)
    keys = check_access(s, s.serve_host)  # production: refuses without keys
    assert keys.read and keys.write and s.serve_host == "0.0.0.0"
    assert f'"{s.serve_port}:{s.serve_port}"' in serve
    assert str(store_dir(s, s.serve_port)).startswith(env["STREAMREC_DATA_DIR"])
    assert f"serve-store:{env['STREAMREC_DATA_DIR']}" in serve
    prom = (ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text()
    assert 'names: ["serve"]' in prom and f"port: {s.serve_port}" in prom


def test_worker_replicas_share_no_data_dir_but_share_learned_state():
    text = (ROOT / "docker-compose.yml").read_text()
    worker = _service(text, "worker")
    assert int(re.search(r"replicas: (\d+)", worker).group(1)) > 1
    # A volume shared by replicas: two workers would open one RocksDB partition store.
    assert "volumes:" not in worker, "worker replicas must not share a data-dir volume"
    s = Settings.from_env(_service_env(text, worker))
    assert s.share_state and s.share_checkpoint_interval_s > 0


def _service_env(text: str, service: str) -> dict[str, str]:
    """The shared env block with a service's own STREAMREC_ settings over it."""
    env = _env_block(text)
    env["STREAMREC_PSEUDONYM_KEY"] = "a-real-secret-of-at-least-32-bytes"
    for line in service.splitlines():
        key, _, value = line.strip().partition(":")
        if key.startswith("STREAMREC_"):
            env[key] = value.strip().strip('"')
    return env
