"""The one error hierarchy every engine facade call raises."""

from __future__ import annotations


class EngineError(Exception):
    """Base of every error the engine reports to its callers."""


class ConfigError(EngineError):
    """A configuration that cannot be used; ``problems`` names every bad key at once."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  {key}: {why}" for key, why in self.problems)
        count = len(self.problems)
        super().__init__(f"invalid configuration ({count} problem{'' if count == 1 else 's'}):\n{lines}")


class DomainError(EngineError):
    """A domain operation that is not allowed (delete the default, duplicate name, ...)."""


class StateError(EngineError):
    """An operation that the virtual server's current state does not allow."""


class MailrootLockedError(EngineError):
    """Another engine already owns this Mailroot."""


class BindError(EngineError):
    """A listener could not bind its address."""


class NotFoundError(EngineError):
    """A queue entry, session or item that does not exist (any more)."""


class QueueWriteError(EngineError):
    """The queue could not durably store a message (disk full, unwritable)."""


class MessageRejected(EngineError):
    """A message the engine will not take (hop count exceeded, no valid recipient, ...); ``str`` says why."""

    cause = ""  # the Badmail counter it counts in when it is badmailed ("" = by where it came from)


class HopCountExceeded(MessageRejected):
    """More Received headers than ``max_hop_count``: probably a mail loop."""

    cause = "hop_count_exceeded"


class ConfigNotSavedError(EngineError):
    """The configuration was applied to the running server but could not be written to its file."""


class MailrootError(EngineError):
    """A Mailroot directory cannot be created or used (a file in the way, no permission, ...)."""
