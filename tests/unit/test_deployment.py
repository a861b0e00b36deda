"""docker-compose.yml cannot run here (no Docker engine): check it agrees with the code."""

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
    env["STREAMREC_PSEUDONYM_KEY"] = "a-real-secret"
    s = Settings.from_env(env)  # raises on any unknown or malformed name
    assert s.mode == "production" and not s.is_embedded
    assert s.resolved_pseudonym_key() == b"a-real-secret"


def test_compose_commands_are_cli_subcommands():
    text = (ROOT / "docker-compose.yml").read_text()
    parser = build_parser()
    for argv in (["topics", "create"], ["worker"], ["scorer"]):
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
