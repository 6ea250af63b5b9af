"""What a subscriber receives: a plain, JSON-born view of one outbox event, never a model."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .errors import PermanentError

if TYPE_CHECKING:
    from .models import OutboxEvent


@dataclass(frozen=True)
class Event:
    id: int
    type: str
    version: int
    aggregate_type: str
    aggregate_id: str
    payload: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, row: OutboxEvent) -> Event:
        """The view a handler gets of an outbox row."""
        return cls(
            id=row.id,
            type=row.type,
            version=row.version,
            aggregate_type=row.aggregate_type,
            aggregate_id=row.aggregate_id,
            payload=row.payload,
            created_at=row.created_at,
        )

    def require(self, *keys: str, version: int | None = None) -> None:
        """Fail permanently (not with a crash) on a payload this handler cannot read."""
        if version is not None and self.version != version:
            raise PermanentError(
                f"unsupported {self.type} payload version {self.version} (handler reads {version})"
            )
        # Absent, null or an empty string; an empty list is a value (a project deleted with no
        # tasks still names its `task_ids`, all none of them).
        missing = [k for k in keys if self.payload.get(k) in (None, "")]
        if missing:
            raise PermanentError(f"{self.type} payload lacks {', '.join(missing)}")
