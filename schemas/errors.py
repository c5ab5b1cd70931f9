"""The one base class of every error a user can act on.

Tasks raise a subclass with a one-line message that says what is wrong and what to do; the
command line prints that line and exits non-zero. Anything else is a bug in prmforge.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input, environment or warehouse, stated in one line."""
