"""The one exception type that the CLI turns into a single line and exit code 2."""


class UserError(Exception):
    """Bad input from the user: missing/corrupt file, bad option, mismatched checkpoint.

    The CLI prints `lddpm: error: <message>` and exits with code 2, never a traceback.
    """
