"""House rules a reader relies on: the docs describe the system, not its history;
the core is free of Kafka, HTTP and settings; links in the docs lead somewhere."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEXT = (".py", ".md", ".sh", ".toml", ".yml", ".html", ".js")
#: An issue, stop or session number: work tracking a reader cannot look up. Another
#: project's issue, named with its project ("<project> issue <n>"), is a citation.
TRACKING = re.compile(r"\b(?:[Ii]ssue|[Ss]top|[Ss]ession)s? #?\d+\b(?!/|\.\d)")


def tracking_numbers(line: str) -> list[str]:
    """The work-tracking numbers in `line`.

    >>> n, m = 3, 26
    >>> [hit.split()[0] for hit in tracking_numbers(f"(issue {n}), at stop {m}; faust-x issue {n}")]
    ['issue', 'stop']
    >>> tracking_numbers(f"the oldest of the session {1}/n")
    []
    """
    out = []
    for m in TRACKING.finditer(line):
        before = line[: m.start()].split()[-1:]
        if not (before and re.search(r"\w[-/]\w", before[0])):  # "<project> issue N"
            out.append(m.group())
    return out


def product_files() -> list[Path]:
    roots = [ROOT / d for d in ("streamrec", "scripts", "tests", "docs", "topics")]
    files = [p for r in roots for p in r.rglob("*") if p.suffix in TEXT and p.is_file()]
    return [*files, ROOT / "README.md", ROOT / "pyproject.toml", ROOT / "docker-compose.yml"]


def test_no_work_tracking_numbers_in_code_docs_or_tests():
    found = []
    for path in product_files():
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if tracking_numbers(line):
                found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()[:90]}")
    assert found == [], "history belongs in CHANGELOG.md and git:\n" + "\n".join(found)


def test_the_core_imports_no_kafka_http_or_settings():
    banned = ("faust", "aiokafka", "kafka", "aiohttp", "streamrec.settings", "streamrec.worker")
    found = []
    for path in (ROOT / "streamrec" / "core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            found += [
                f"{path.relative_to(ROOT)}: {name}"
                for name in names
                if any(name == b or name.startswith(b + ".") for b in banned)
            ]
    assert found == []


def test_links_in_the_docs_stay_inside_the_repository_and_resolve():
    link = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
    broken = []
    for doc in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for target in link.findall(doc.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            resolved = (doc.parent / target).resolve()
            if not resolved.is_relative_to(ROOT) or not resolved.exists():
                broken.append(f"{doc.relative_to(ROOT)} -> {target}")
    assert broken == []


def test_every_exception_streamrec_raises_on_purpose_is_in_the_one_tree():
    from streamrec import errors

    tree = errors.__doc__ or ""
    defined = []
    for path in (ROOT / "streamrec").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                isinstance(b, ast.Name) and (b.id.endswith("Error") or b.id == "Exception")
                for b in node.bases
            ):
                defined.append((path.relative_to(ROOT).as_posix(), node.name))
    assert all(where == "streamrec/errors.py" for where, _ in defined), defined
    for _, name in defined:
        assert issubclass(getattr(errors, name), errors.StreamrecError), name
        assert f"── {name} " in tree or f"── {name}\n" in tree or name == "StreamrecError", name


def test_the_packages_of_the_core_import_each_other_in_one_direction():
    """A package that imports another is never imported by it, through any module."""
    pkgs = {p.name for p in (ROOT / "streamrec" / "core").iterdir() if (p / "__init__.py").exists()}
    edges: dict[str, set[str]] = {p: set() for p in pkgs}
    for pkg in pkgs:
        for path in (ROOT / "streamrec" / "core" / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    parts = node.module.split(".")
                    if parts[:2] == ["streamrec", "core"] and len(parts) > 2 and parts[2] in pkgs:
                        edges[pkg].add(parts[2])
    edges = {p: {q for q in e if q != p} for p, e in edges.items()}

    def reaches(a: str, b: str, seen: set[str]) -> bool:
        return any(n == b or (n not in seen and reaches(n, b, seen | {n})) for n in edges[a])

    cycles = sorted({tuple(sorted((a, b))) for a in pkgs for b in edges[a] if reaches(b, a, {b})})
    assert cycles == [], f"core packages that import each other: {cycles}"


def test_the_pages_generated_from_the_code_are_current():
    """docs/modules.md (every module), docs/settings.md and docs/cli.md."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "reference_docs.py"), "--check"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_kafka_clients_are_built_in_one_place_with_the_security_settings():
    """Outside `streamrec/clients.py` nothing constructs a Kafka client or passes the
    security settings (which the factories add: twice is a TypeError at start)."""
    ctors = {"KafkaConsumer", "KafkaProducer", "KafkaAdminClient", "AIOKafkaConsumer",
             "AIOKafkaProducer", "AIOKafkaClient"}  # fmt: skip
    found = []
    for path in (ROOT / "streamrec").rglob("*.py"):
        if path.name == "clients.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.id if isinstance(node.func, ast.Name) else ""
            spread = [ast.unparse(k.value) for k in node.keywords if k.arg is None]
            if name in ctors or any("security" in s for s in spread):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)[:80]}")
    assert found == []


def test_the_client_sdk_imports_neither_aiokafka_nor_faust():
    """A storefront backend that imports `streamrec.client` pays for kafka-python only."""
    code = "import sys, streamrec.client; print(sorted({'aiokafka', 'faust'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def test_no_module_grows_past_450_lines():
    """Small modules named for what they do: one past 450 lines is two parts in one."""
    sizes = {
        str(p.relative_to(ROOT)): len(p.read_text().splitlines())
        for p in (ROOT / "streamrec").rglob("*.py")
    }
    assert {p: n for p, n in sizes.items() if n > 450} == {}
