"""The one exception type for problems a user can cause (bad spec, bad file, bad option).

The CLI turns it into a one-line message and exit code 2; library callers can catch it.
"""


class NasError(ValueError):
    """A user-caused problem; the message names the offending field, file or value."""
