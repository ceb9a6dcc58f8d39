"""OpenAPI request bodies for routes that read their body themselves (and so declare no body parameter).

FastAPI documents such a body only through ``openapi_extra``; :func:`json_body` builds that dict.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

JSON = "application/json"


def schema_with_example(schema: dict[str, Any], example: Any) -> dict[str, Any]:
    """An OpenAPI Media Type object: the body's JSON schema and one example of it.

    >>> schema_with_example({"type": "string"}, "a,b\\n1,2\\n")
    {'schema': {'type': 'string'}, 'example': 'a,b\\n1,2\\n'}
    """
    return {"schema": schema, "example": example}


def json_body(
    schema: dict[str, Any],
    example: Any,
    *,
    required: bool = True,
    extra_media_types: Mapping[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The ``openapi_extra`` of a route whose body is JSON (``schema``, ``example``), and maybe other media types.

    ``extra_media_types`` maps more content types to their :func:`schema_with_example`, listed after JSON.

    >>> json_body({"type": "object"}, {"rows": []})
    {'requestBody': {'required': True,
                     'content': {'application/json': {'schema': {'type': 'object'}, 'example': {'rows': []}}}}}
    >>> csv = schema_with_example({"type": "string"}, "a\\n1\\n")
    >>> body = json_body({"type": "object"}, {"a": [1]}, extra_media_types={"text/csv": csv})
    >>> list(body["requestBody"]["content"])
    ['application/json', 'text/csv']
    """
    content = {JSON: schema_with_example(schema, example), **(extra_media_types or {})}
    return {"requestBody": {"required": required, "content": content}}
