"""Split a solution into steps. The boundary pattern is configurable; the default is a blank line
or a line that starts with `Step k:`."""

from __future__ import annotations

import re

DEFAULT_BOUNDARY = r"\n\s*\n|\n(?=Step \d+:)"


def split_steps(text: str, boundary: str = DEFAULT_BOUNDARY) -> list[str]:
    """The non-empty steps of `text`, stripped, in order.

    >>> split_steps("Step 1: 1 + 1 = 2\\nStep 2: 2 * 3 = 6\\nThe answer is 6.")
    ['Step 1: 1 + 1 = 2', 'Step 2: 2 * 3 = 6\\nThe answer is 6.']
    >>> split_steps("First we add.\\n\\nThen we multiply.")
    ['First we add.', 'Then we multiply.']
    """
    pieces = re.split(boundary, text)
    return [piece.strip() for piece in pieces if piece and piece.strip()]
