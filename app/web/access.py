"""Who may do what: the host's resolver, asked on every request.

Authentication is the host's (its `dependencies=` on the router); the router asks the host
what the authenticated caller may do with collection jobs through one dependency that
returns an `Access`. The default grants everything: a host that mounts the router without
a resolver has decided that its own authentication is enough.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from enum import StrEnum


class Action(StrEnum):
    READ = "read"
    CREATE = "create"
    CANCEL = "cancel"
    REQUEUE = "requeue"
    RETRY = "retry"


@dataclass(frozen=True)
class Access:
    """What one request may do. `analyst_id` set: only that analyst's jobs exist for it
    (others are 404, never 403, so their ids are not confirmed), and it creates jobs for
    that analyst alone."""

    actions: frozenset[Action] = field(default_factory=lambda: frozenset(Action))
    analyst_id: uuid.UUID | None = None

    @classmethod
    def read_only(cls, analyst_id: uuid.UUID | None = None) -> Access:
        return cls(frozenset({Action.READ}), analyst_id)

    def allows(self, action: Action) -> bool:
        return action in self.actions

    def sees(self, analyst_id: uuid.UUID) -> bool:
        return self.analyst_id is None or self.analyst_id == analyst_id


def full_access() -> Access:
    """The default resolver: every action on every job."""
    return Access()
