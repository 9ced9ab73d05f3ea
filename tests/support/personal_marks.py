"""Validate topic records against the published JSON Schemas as a consumer of the contract does: honouring the
personal marks.

On the topics a personal string is a ``pii1:`` token (or ``[erased]``), longer than the ``maxLength`` that bounds
its plain text. The schemas mark each such string ``x-leadstream-personal: true`` with
``x-leadstream-token-max-length`` (schemas/README.md, "Personal fields are longer on the topics"): a consumer
bounds a token there by the token's length. This reads only the published keywords, as a consumer in another
language would (no import of the contract's code).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError


def _max_length(validator: Any, max_length: int, instance: Any, schema: dict[str, Any]) -> Iterator[ValidationError]:
    """``maxLength``, except that at a string marked personal a token is bounded by the token's length."""
    if not validator.is_type(instance, "string"):
        return
    if schema.get("x-leadstream-personal") is True and (instance.startswith("pii1:") or instance == "[erased]"):
        max_length = schema["x-leadstream-token-max-length"]
    if len(instance) > max_length:
        yield ValidationError(f"{len(instance)} characters is longer than {max_length}")


PersonalAwareValidator: Any = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"maxLength": _max_length})
"""A JSON Schema 2020-12 validator whose ``maxLength`` honours the personal marks (everything else as the draft)."""


def payload_validator(schema: dict[str, Any]) -> Any:
    """A validator of topic records for an event type's published schema (formats checked)."""
    return PersonalAwareValidator(schema, format_checker=PersonalAwareValidator.FORMAT_CHECKER)
