"""The one exception type the library raises for problems a user can fix.

The CLI turns it into a single line on stderr and exit status 1; Python callers can catch it.
Its message always says what is wrong and what to do about it.
"""


class CharRNNError(Exception):
    """A problem with the user's input, files or environment (never a bug in charrnn)."""
