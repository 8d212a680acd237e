"""User-facing errors.

Every error a user can cause derives from :class:`MedfeatError`. The CLI prints such errors as one
paragraph (what happened, what was expected, what to do) and exits non-zero without a traceback;
``--debug`` shows the traceback. Anything else is a bug and is reported as one.
"""

from __future__ import annotations


class MedfeatError(Exception):
    """Base class for errors caused by input, configuration or environment, not by a bug.

    ``remedy`` names what the user should change; it is appended to the message.
    """

    exit_code = 2
    title = "Error"

    def __init__(self, message: str, *, remedy: str | None = None) -> None:
        self.message = message.strip()
        self.remedy = remedy.strip() if remedy else None
        super().__init__(self.render())

    def render(self) -> str:
        return f"{self.message} {self.remedy}" if self.remedy else self.message


class ConfigError(MedfeatError):
    """A pipeline file or override is invalid; carries the file, line and key path when known."""

    title = "Configuration error"

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        key_path: str | None = None,
        remedy: str | None = None,
    ) -> None:
        self.source, self.line, self.key_path = source, line, key_path
        self.detail = message.strip()  # the message without where it happened
        where = []
        if source:
            where.append(f"{source}" + (f", line {line}" if line else ""))
        if key_path:
            where.append(f"at '{key_path}'")
        prefix = (" ".join(where) + ": ") if where else ""
        super().__init__(prefix + message, remedy=remedy)


class ComponentNotFoundError(ConfigError):
    """A component name is not registered for the requested kind."""

    title = "Unknown component"


class PluginError(MedfeatError):
    """A plugin is missing, too old, or failed to load."""

    title = "Plugin error"


class PluginFailure(PluginError):
    """An installed plugin's code failed: neither the user's input nor medfeat is at fault."""

    title = "Plugin failure"
    exit_code = 1


class InputFileError(MedfeatError):
    """A file is missing, unreadable, corrupt or of an unexpected kind."""

    title = "Input file error"


class GeometryError(MedfeatError):
    """Images, points or fields cannot be related in physical space."""

    title = "Geometry error"


class LandmarkError(MedfeatError):
    """Landmark files disagree (count, dimension) or lie outside their image."""

    title = "Landmark error"


class DataError(MedfeatError):
    """Image content is unusable (NaN/Inf values, wrong dimensionality, empty)."""

    title = "Data error"


class ResourceError(MedfeatError):
    """A job would not fit in memory or on the device."""

    title = "Resource error"


class CheckpointError(MedfeatError):
    """A weights file is missing or does not match the architecture it is loaded into."""

    title = "Checkpoint error"


class Interrupted(MedfeatError):
    """The user stopped a run (Ctrl-C, SIGTERM); what it had done was saved first."""

    title = "Interrupted"
    exit_code = 130
