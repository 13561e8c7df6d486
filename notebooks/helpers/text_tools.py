"""Text helpers that a notebook loads with `%run helpers/text_tools.py`."""

import re


def tokens(text):
    return re.findall(r"[a-z']+", text.lower())
