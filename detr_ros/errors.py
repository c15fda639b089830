"""Errors that describe a problem with the user's input (a file, a parameter, a dataset).

Every layer raises these; the command line and the nodes print them as one clear
line instead of a traceback. They import nothing, so any layer may use them.
"""


class DetrRosError(Exception):
    """A problem the user can fix: the message says what was found and what was expected."""


class ModelFileError(DetrRosError):
    """A model or checkpoint file is missing, truncated, corrupt or of an unknown kind."""


class DatasetError(DetrRosError):
    """A dataset is missing files or has malformed entries."""


class ConfigError(DetrRosError):
    """A configuration value or parameter is invalid."""
