"""The one exception type that the CLI turns into a single line and exit code 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: missing/corrupt file, bad option, mismatched checkpoint.

    The CLI prints `lddpm: error: <message>` and exits with code 2, never a traceback.
    `option`: the choice at fault when there is one ("steps", "tile", ...): the message
    says it in words, and the CLI adds its own flag (`--steps 3: ...`), the web page its
    field name; the library itself never quotes a command-line flag.
    """

    def __init__(self, *args, option: str | None = None):
        super().__init__(*args)
        self.option = option


class SamplingError(UserError, ValueError):
    """A sampler or step count that this schedule or checkpoint cannot run (one line, exit 2
    in the CLI; library callers may catch it as the ValueError it also is)."""


def display_path(path) -> str:
    """A path as reports and messages show it: relative to the current directory when inside
    it (the project, for the benchmarks), else with the home directory as `~`, else as the
    absolute path the user gave (a `../../tmp/x` would only hide where it is)."""
    from pathlib import Path

    p = Path(path).absolute()
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        pass
    home = Path.home()
    try:
        return "~/" + str(p.relative_to(home))
    except ValueError:
        return str(p)
