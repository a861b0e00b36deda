"""The one root exception of streamrec and its short tree.

    StreamrecError
    ├── ConfigError          a setting is missing or wrong; the message says which and what to do
    ├── SerdeError           bytes that are not JSON (or an object orjson cannot encode)
    ├── ContractError        a topic contract file in topics/ is missing or malformed
    ├── BrokerError          the embedded broker cannot start (port taken, binary missing)
    └── DatasetError         a data set or event log cannot be read

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
