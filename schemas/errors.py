"""The one base class of every error a user can act on.

Tasks raise a subclass with a one-line message that says what is wrong and what to do; the
command line prints that line and exits non-zero. Anything else is a bug in prmforge.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input, environment or warehouse, stated in one line."""


def first_line(error: BaseException) -> str:
    """The first line of an error's message (its type's name when the message is empty), for
    error messages that must stay one line.

    >>> first_line(ValueError("bad value\\nmore detail")), first_line(KeyError())
    ('bad value', 'KeyError')
    """
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
