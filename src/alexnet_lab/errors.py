"""Errors that mean "the user asked for something we cannot do", not "the code broke".

Entry points print these as one paragraph instead of a traceback.
"""


class UserError(ValueError):
    """Bad input from a config, a path or a file: the message says what to do."""


class ConfigError(UserError):
    pass


class DataError(UserError):
    pass


class CheckpointError(UserError):
    pass


class TrainingDivergedError(UserError):
    """The loss became NaN or inf: the message names the step and the checkpoint kept."""
