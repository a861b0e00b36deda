"""The one root exception of streamrec and its short tree.

    StreamrecError
    ├── ConfigError          a setting is missing or wrong; the message says which and what to do
    │   └── ModelLoadError   the encoder directory is missing or not a loadable model
    ├── SerdeError           bytes that are not JSON (or an object orjson cannot encode)
    ├── ContractError        a topic contract file in topics/ is missing or malformed
    ├── BrokerError          the embedded broker cannot start (port taken, binary missing)
    ├── DatasetError         a data set or event log cannot be read
    ├── SnapshotError        a snapshot file this version does not read
    ├── DeltaError           a shared-state record this version does not read
    ├── CheckpointError      a shared checkpoint that cannot be put together
    ├── SealError            sealed bytes that do not open (another key, or altered)
    ├── ErasureTimeout       no worker confirmed an erasure in time (it stays queued)
    ├── ServeError           the HTTP API answered an error (status, code, detail)
    └── InvalidEvent         `EventProducer.track` got an event the worker would reject
                             (also a ValueError)

Every class lives here, so a caller catches by kind without importing the module
that raises it; the modules that raise them import them from here.

Input that fails validation is *not* an exception path: the core returns a
`Rejection` and the worker sends it to the dead-letter topic. Exceptions are
for operators (bad configuration) and programmers (bugs), never for bad events.
"""


class StreamrecError(Exception):
    """Root of every error streamrec raises on purpose."""


class ConfigError(StreamrecError):
    """A setting is missing, malformed or unsafe for the chosen mode."""


class SerdeError(StreamrecError):
    """Bytes could not be decoded as JSON, or a value could not be encoded."""


class ContractError(StreamrecError):
    """A topic contract in topics/ is missing or malformed."""


class BrokerError(StreamrecError):
    """The embedded broker could not be started or reached."""


class DatasetError(StreamrecError):
    """A data set or event log could not be found or parsed."""


class DeltaError(StreamrecError):
    """A record on the shared-state topic that is not one this version reads."""


class CheckpointError(StreamrecError):
    """A shared checkpoint that cannot be put together: the worker starts without it."""


class ModelLoadError(ConfigError):
    """The encoder directory is missing or not a loadable BERT-family model."""


class SnapshotError(StreamrecError):
    """A snapshot file that is not a streamrec snapshot of a version this code reads."""


class SealError(StreamrecError):
    """Sealed bytes could not be opened: another key, or they were altered."""


class ErasureTimeout(StreamrecError):
    """No worker confirmed the erasure in time (the request stays queued)."""


class ServeError(StreamrecError):
    """The service answered an error: `status`, `code` and what to do (`detail`)."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"HTTP {status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail


class InvalidEvent(StreamrecError, ValueError):
    """`track()` was called with an event the worker would reject."""
