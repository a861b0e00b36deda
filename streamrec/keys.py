"""Secrets and keys: the `Secret` type, the dev key's rules, and how `Settings`
resolves the pseudonym, dead-letter and API keys and the Kafka security options.

Kept apart from `settings.py` (which holds the fields): these are the rules a
security review reads, in one place.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from streamrec.errors import ConfigError

ENV_KAFKA_BOOTSTRAP = "STREAMREC_KAFKA_BOOTSTRAP"
ENV_PSEUDONYM_KEY = "STREAMREC_PSEUDONYM_KEY"

ENV_DLQ_KEY = "STREAMREC_DLQ_KEY"

# Only usable with the embedded (loopback) broker: production refuses it.
DEV_PSEUDONYM_KEY = "streamrec-dev-key-not-for-production"
#: The shortest production key, in bytes (256 bits: a key no one can guess).
MIN_KEY_BYTES = 32
#: The shortest API key `streamrec serve` takes in production.
MIN_API_KEY_BYTES = 16
_MAKE_KEY = "`python -c 'import secrets; print(secrets.token_hex(32))'`"


def is_dev_key(key: str) -> bool:
    """The public dev key however it is cased, padded or quoted.

    >>> is_dev_key("  Streamrec-Dev-Key-Not-For-Production "), is_dev_key('"x"')
    (True, False)
    """
    core = "".join(key.split()).strip("\"'`").casefold()
    return core == DEV_PSEUDONYM_KEY


class Secret:
    """A string that does not print itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class KeyResolution:
    """The key and security methods of `Settings` (a mixin: the fields live there)."""

    mode: str
    kafka_bootstrap: str
    pseudonym_key: Secret
    dlq_key: Secret
    api_read_keys: Secret
    api_write_keys: Secret
    kafka_security_protocol: str
    kafka_sasl_mechanism: str
    kafka_sasl_username: str
    kafka_sasl_password: Secret
    kafka_ssl_cafile: str

    @property
    def is_embedded(self) -> bool:
        """True when every bootstrap server is on loopback (the embedded broker)."""
        for server in self.kafka_bootstrap.split(","):
            host = server.strip().rsplit(":", 1)[0].strip("[]")
            if host == "localhost":
                continue
            try:
                if not ipaddress.ip_address(host).is_loopback:
                    return False
            except ValueError:
                return False
        return True

    def resolved_pseudonym_key(self) -> bytes:
        """The HMAC key. The dev key (in any casing or padding) only on a loopback
        broker; production needs a key of at least `MIN_KEY_BYTES`."""
        key = self.pseudonym_key.get() if self.pseudonym_key else ""
        if (key and is_dev_key(key)) or (not key and self.mode != "production"):
            if self.mode == "production":
                raise ConfigError(
                    f"{ENV_PSEUDONYM_KEY} is (a variant of) the public dev key; make a real "
                    f"secret with {_MAKE_KEY}"
                )
            if not self.is_embedded:
                raise ConfigError(
                    f"{ENV_KAFKA_BOOTSTRAP}={self.kafka_bootstrap} is not a loopback broker; "
                    "the public dev key is only allowed there (anyone can compute its "
                    f"pseudonyms). Set {ENV_PSEUDONYM_KEY} to a secret made with {_MAKE_KEY}"
                )
            return DEV_PSEUDONYM_KEY.encode()
        if not key:
            raise ConfigError(
                f"production mode needs {ENV_PSEUDONYM_KEY}: a secret of at least "
                f"{MIN_KEY_BYTES} bytes, e.g. {_MAKE_KEY}. "
                "Keep it stable: changing it changes every user's pseudonym (docs/privacy.md)."
            )
        if self.mode == "production" and len(key.encode()) < MIN_KEY_BYTES:
            raise ConfigError(
                f"{ENV_PSEUDONYM_KEY} is {len(key.encode())} bytes; production needs at least "
                f"{MIN_KEY_BYTES} (a guessable key lets anyone compute pseudonyms). "
                f"Make one with {_MAKE_KEY}"
            )
        return key.encode()

    def resolved_dlq_key(self) -> bytes:
        """The secret that seals dead letters: its own, or derived from the pseudonym key."""
        pseudonym_key = self.resolved_pseudonym_key()  # its checks apply in any case
        if not self.dlq_key:
            return b"dlq:" + pseudonym_key
        key = self.dlq_key.get()
        if is_dev_key(key) or (len(key.encode()) < MIN_KEY_BYTES and self.mode == "production"):
            raise ConfigError(
                f"{ENV_DLQ_KEY} must be a secret of at least {MIN_KEY_BYTES} bytes "
                f"(or unset, to derive it from {ENV_PSEUDONYM_KEY}); make one with {_MAKE_KEY}"
            )
        return key.encode()

    def resolved_api_keys(self) -> tuple[frozenset[str], frozenset[str]]:
        """(read keys, write keys) of `streamrec serve`. Production needs both, each
        at least `MIN_API_KEY_BYTES`; dev without keys serves anyone (loopback only)."""
        keys = []
        for name, secret in (("READ", self.api_read_keys), ("WRITE", self.api_write_keys)):
            found = frozenset(k.strip() for k in secret.get().split(",") if k.strip())
            short = [k for k in found if len(k.encode()) < MIN_API_KEY_BYTES]
            if self.mode == "production" and (not found or short):
                raise ConfigError(
                    f"production mode needs STREAMREC_API_{name}_KEYS: comma-separated "
                    f"secrets of at least {MIN_API_KEY_BYTES} bytes each, e.g. {_MAKE_KEY}"
                )
            keys.append(found)
        return keys[0], keys[1]

    def kafka_python_security(self) -> dict[str, Any]:
        """Security keyword arguments for kafka-python clients."""
        out: dict[str, Any] = {"security_protocol": self.kafka_security_protocol}
        if self.kafka_security_protocol.startswith("SASL"):
            out |= {
                "sasl_mechanism": self.kafka_sasl_mechanism,
                "sasl_plain_username": self.kafka_sasl_username,
                "sasl_plain_password": self.kafka_sasl_password.get(),
            }
        if self.kafka_ssl_cafile:
            out["ssl_cafile"] = self.kafka_ssl_cafile
        return out

    def aiokafka_security(self) -> dict[str, Any]:
        """The same for aiokafka, which takes an SSL context instead of a CA file."""
        out = self.kafka_python_security()
        cafile = out.pop("ssl_cafile", None)
        if "SSL" in self.kafka_security_protocol:
            import ssl

            out["ssl_context"] = ssl.create_default_context(cafile=cafile)
        return out
