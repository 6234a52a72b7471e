"""`__RANDOM_INT__` anywhere in a workflow: a whole value becomes a random integer, an
occurrence inside a longer string becomes its digits; each occurrence draws its own number."""

from __future__ import annotations

import random
import re
from typing import Any

RANDOM_INT = "__RANDOM_INT__"
_PATTERN = re.compile(re.escape(RANDOM_INT))
MAX = 2**32 - 1  # what seeds accept everywhere in ComfyUI


def replace_random_ints(data: Any) -> Any:
    """Replace in place (dicts and lists) and return the result, as the original did."""
    if isinstance(data, dict):
        for key, value in data.items():
            data[key] = replace_random_ints(value)
    elif isinstance(data, list):
        for i, item in enumerate(data):
            data[i] = replace_random_ints(item)
    elif isinstance(data, str) and RANDOM_INT in data:
        if data == RANDOM_INT:
            return random.randint(0, MAX)
        return _PATTERN.sub(lambda _: str(random.randint(0, MAX)), data)
    return data
