"""Errors that say whose fault it was (h11's habit): the caller's input, or this configuration."""


class ClockworkError(Exception):
    """Base class of every error this package raises on purpose."""


class InvalidInputError(ClockworkError, ValueError):
    """Input from a caller (request, trace file, profile) is malformed; nothing was changed."""


class ConfigurationError(ClockworkError, ValueError):
    """A configuration cannot work (for example a model larger than any device); nothing ran."""
