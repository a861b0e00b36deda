"""The one serialisation module: orjson with fixed options.

Every topic payload crosses the wire through `dumps` / `loads`; failures become
`SerdeError` with the cause attached, so callers never see orjson's own types.

>>> loads(dumps({"b": 1, "a": [1.5, None]}))
{'b': 1, 'a': [1.5, None]}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from streamrec.errors import ConfigError, SerdeError

# Non-str dict keys (item ids as ints) and numpy scalars appear in core state;
# keys are always serialised as strings so consumers in any language can read them.
_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def dumps(obj: Any) -> bytes:
    """Encode `obj` as compact UTF-8 JSON bytes."""
    try:
        return orjson.dumps(obj, option=_OPTIONS)
    except TypeError as exc:
        raise SerdeError(f"cannot encode {type(obj).__name__} as JSON: {exc}") from exc


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Decode JSON bytes; raises `SerdeError` for anything that is not valid JSON."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise SerdeError(f"not valid JSON: {exc}") from exc


def json_setting(setting: str, spec: str, example: str) -> Any:
    """A setting given as JSON text or as `@path/to/file.json`, decoded.

    Raises `ConfigError` naming the setting, with `example` of what is expected.
    """
    if spec.startswith("@"):
        path = Path(spec[1:])
        try:
            spec = path.read_text()
        except OSError as exc:
            raise ConfigError(f"{setting}: cannot read {path}: {exc}") from exc
    try:
        return orjson.loads(spec)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"{setting} must be {example} (or @file.json): {exc}") from exc
