"""The one error type that reaches users as a single line and exit code 2."""


class PacerUserError(Exception):
    """Bad input: an unknown name, an out-of-range value, a broken file, a missing service.

    The message must name the culprit and, where there is a list, the valid choices."""

    exit_code = 2
