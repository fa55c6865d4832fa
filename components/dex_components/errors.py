"""Errors a pipeline step raises to fail with a message a user can act on."""


class StepError(Exception):
    """A step refused its input; the message names the problem."""


class DataValidationError(StepError):
    """Input data broke a quality rule (the message names the column and the rule)."""
