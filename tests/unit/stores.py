"""A profile store that keeps bytes, as the worker's table does: state round-trips
through `Profile.to_bytes` / `from_bytes` between batches (a DictProfileStore keeps
the live objects and would hide what serialisation does to them)."""

from __future__ import annotations

from streamrec.core.profile import Profile


class BytesProfileStore(dict[str, bytes]):
    def __init__(self) -> None:
        super().__init__()
        self.repaired = 0

    def get(self, user: str, partition: int = 0) -> Profile | None:  # type: ignore[override]
        raw = dict.get(self, user)
        if raw is None:
            return None
        profile, repaired = Profile.from_bytes(raw, user)
        self.repaired += repaired
        return profile

    def put(self, user: str, profile: Profile, partition: int = 0) -> None:
        self[user] = profile.to_bytes()

    def delete(self, user: str, partition: int = 0) -> None:
        """An erasure (`forget` event): the profile goes, as the table's tombstone does."""
        self.pop(user, None)
