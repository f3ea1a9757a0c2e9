"""The two exception types a user sees as one line: what they caused, and what the machine did to them.

`NasError`: a problem a user can cause (bad spec, bad file, bad option); the CLI exits with `EXIT_USAGE` (2).
`EnvironmentFault`: a fault of the environment (disk full, read-only folder, permission denied, database
gone); nothing already written is lost, and the same command resumes once the cause is fixed. The CLI
exits with `EXIT_ENVIRONMENT` (3). Library callers can catch either; `run_reporting` is how the `nas`
command and its worker processes turn them into that line and exit code.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable

EXIT_USAGE = 2
EXIT_ENVIRONMENT = 3


class NasError(ValueError):
    """A user-caused problem; the message names the offending field, file or value."""


class EnvironmentFault(RuntimeError):
    """A fault of the machine, not of the input; the message names the path (or database) and the cause."""


# What to do about the common causes; other errnos get the plain cause.
_REMEDY = {
    errno.ENOSPC: "free some space",
    errno.EDQUOT: "free some space (quota)",
    errno.EROFS: "make it writable",
    errno.EACCES: "check its permissions",
    errno.EPERM: "check its permissions",
}


def write_fault(path: str | os.PathLike[str], exc: OSError, action: str = "write") -> EnvironmentFault:
    """The one-line fault for an OSError met while writing `path`: the path, the cause and the way out."""
    cause = exc.strerror or str(exc) or type(exc).__name__
    remedy = _REMEDY.get(exc.errno or 0)
    advice = f"{remedy}, then run the same command again" if remedy else "run the same command again once fixed"
    return EnvironmentFault(f"cannot {action} {os.fspath(path)}: {cause}; {advice}")


def run_reporting(call: Callable[[], int | None], prog: str = "nas") -> int:
    """Run `call` and return its exit code; the errors a user should see as one line are printed as
    `PROG: error: ...` on stderr with their exit code (an OSError nobody named is a fault of the environment)."""
    try:
        return int(call() or 0)
    except NasError as exc:
        return _report(prog, exc, EXIT_USAGE)
    except EnvironmentFault as exc:
        return _report(prog, exc, EXIT_ENVIRONMENT)
    except OSError as exc:
        return _report(prog, write_fault(exc.filename or "a file", exc, "use"), EXIT_ENVIRONMENT)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr, flush=True)
        return 130


def _report(prog: str, exc: Exception, code: int) -> int:
    message = " ".join(str(exc).split())  # one line, whatever the message held
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
    return code
