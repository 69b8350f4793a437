"""User-facing errors: one clear line naming the file, field or override at fault."""


class EquilabError(Exception):
    """Base class of errors that the command-line entry points print as one line."""


class ConfigError(EquilabError):
    """A config value or override is wrong (unknown name, wrong type, out of range)."""


class DataError(EquilabError):
    """A data file is missing, malformed or truncated."""
