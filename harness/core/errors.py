"""The error types that reach users as a single line: bad input (exit code 2) and a results
folder that stopped taking writes mid-run (exit code 1)."""


class PacerUserError(Exception):
    """Bad input: an unknown name, an out-of-range value, a broken file, a missing service.

    The message must name the culprit and, where there is a list, the valid choices."""

    exit_code = 2


class StorageError(PacerUserError):
    """A run's record could not be written (a full disk, a folder made read-only, a lost mount).

    What was written before stays intact and the run is left resumable (`resume=true`); the
    message names the file and the system's reason. Not the submission's fault, so never
    recorded as the run's `error`."""

    exit_code = 1
