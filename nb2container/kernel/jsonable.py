"""Turn notebook values into JSON values, exactly as the server in the image will."""

from __future__ import annotations

import json
from typing import Any

from nb2container.runtime.codecs import to_json  # stdlib-only: safe to import in any kernel


def to_jsonable(value: Any) -> Any:
    """The JSON form of a value as the server will send it; raises TypeError when it has none."""
    return json.loads(json.dumps(value, default=to_json, allow_nan=True))
