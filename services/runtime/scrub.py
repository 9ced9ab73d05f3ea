"""Error texts without personal data, for logs and dead-letter headers.

Exception messages and provider answers often quote what they were given: a pydantic error shows the
``input_value`` (a name, an email), an HTTP error the URL it called (a profile URL, an address in the
query), a provider body the request it refused. Logs and Kafka headers must not carry personal data,
and the scrubber cannot know which names a record held, so it works on the structure of the text:

- the error's class and its codes (SQLSTATE, HTTP status) are kept: they say what went wrong;
- emails, URLs, quoted strings (``'...'``, ``"..."``: where libraries put the offending value; unless they
  are code: a ``leadstream.*`` type or topic name, a snake_case field name), words
  with letters outside ASCII, capitalised words (``Zebulon``; CamelCase identifiers such as
  ``LeadDiscovered`` and ALLCAPS codes stay) other than a few words errors start with, and long digit
  runs (phone numbers) become ``<redacted>``;
- lower-case words, identifiers, ids and numbers stay, so a message keeps its meaning
  ("<redacted> should have at most 200 characters").

A lower-case unquoted name in free text would survive: code that builds a message from a record's
personal fields must not (pass ids), and the tests grep the logs of a real campaign for a lead's name.
"""

from __future__ import annotations

import logging
import re
import traceback
from typing import Any

REDACTED = "<redacted>"
MAX_MESSAGE = 1000

_EMAIL = re.compile(r"[^\s<>()\[\]{}'\",;:=/]+@[^\s<>()\[\]{}'\",;:/]+")
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]{1,15}://[^\s'\"<>]*")
# A quoted string, or an opening quote with no closing one (a message cut in the middle of a value).
_QUOTED = re.compile(r"'(?:[^'\\\n]|\\.)*(?:'|$)|\"(?:[^\"\\\n]|\\.)*(?:\"|$)", re.MULTILINE)
_NON_ASCII_WORD = re.compile(r"\w*[^\x00-\x7f\s]+[\w\-]*")
_CAPITALISED = re.compile(r"\b[A-Z][a-z]+\b(?!\.\w)")
_DIGIT_RUN = re.compile(r"\+?\d[\d .()-]{7,}\d")
# Words errors and HTTP reason phrases start with: kept so "Connection refused" stays readable. No word here
# is also a common first name.
_KEPT_WORDS = frozenset(
    """
    Bad Cannot Client Conflict Connection Could Error Expected Extra Failed Field Forbidden Found Gateway
    Input Internal Invalid Key Many Method Missing No Not Object Payload Request Requests Required Response
    Server Service String Teapot The This Timeout Too Type Unable Unauthorized Unavailable Unknown Unprocessable
    Entity Value Gone Length Precondition Range Unsupported Media Allowed Acceptable Redirect Moved Temporarily
    Permanently Content Large Long Refused Reset Closed Broken Pipe Read Write Connect Network Unreachable
    Name Resolution Temporary Failure Host Address Use Errno Integer Number Float Boolean List Dict Tuple None
    True False Traceback File Line Above During Handling Another Occurred Direct Cause Following Exception
    Unexpected Empty Maximum Minimum Limit Rate Limited Retry After Duplicate Violates Unique Constraint Foreign
    Check Null Column Relation Table Schema Does Exist Already Exists Detail Hint Insert Update Delete Select
    Transaction Aborted Deadlock Detected Serialization Lock Statement Canceled Cancelled Query Syntax Near At
    Attempt Attempts Simulated Provider Studio Account Campaign Lead Message Event Record Topic Partition Offset
    Handler Consumer Producer Broker Kafka Postgres Database Outbox Relay Webhook Signature Token Secret
    """.split()
)


# Quoted values that are code, not data: the contract's type and topic names, snake_case field names.
_CODE_VALUE = re.compile(r"leadstream\.[a-z0-9_.]+|[a-z][a-z0-9]*(?:_[a-z0-9]+)+")


def _quoted(match: re.Match[str]) -> str:
    quoted = match.group(0)
    inner = quoted[1:-1] if len(quoted) > 1 and quoted[-1] == quoted[0] else quoted[1:]
    if _CODE_VALUE.fullmatch(inner):
        return quoted
    return quoted[0] + REDACTED + quoted[0]


def _capitalised(match: re.Match[str]) -> str:
    word = match.group(0)
    return word if word in _KEPT_WORDS else REDACTED


def scrub_text(text: str, *, limit: int = MAX_MESSAGE) -> str:
    """``text`` with what may be personal data replaced by ``<redacted>`` (see the module), cut at ``limit``."""
    text = text[: limit * 4]  # bounded work on a huge provider body
    text = _URL.sub(REDACTED, text)
    text = _EMAIL.sub(REDACTED, text)
    text = _QUOTED.sub(_quoted, text)
    text = _NON_ASCII_WORD.sub(REDACTED, text)
    text = _DIGIT_RUN.sub(REDACTED, text)
    text = _CAPITALISED.sub(_capitalised, text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def scrub_template(text: str) -> str:
    """A log message template (code, not data) with only what cannot be code removed: emails, URLs."""
    return _EMAIL.sub(REDACTED, _URL.sub(REDACTED, text))


def _codes(exc: BaseException) -> list[str]:
    codes: list[str] = []
    current: BaseException | None = exc
    seen: set[int] = set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        sqlstate = getattr(current, "sqlstate", None) or getattr(current, "pgcode", None)
        if isinstance(sqlstate, str) and len(sqlstate) == 5 and f"SQLSTATE {sqlstate}" not in codes:
            codes.append(f"SQLSTATE {sqlstate}")
        response = getattr(current, "response", None)  # httpx.HTTPStatusError
        status = (
            getattr(current, "status", None)
            or getattr(current, "status_code", None)
            or getattr(response, "status_code", None)
        )
        if isinstance(status, int) and f"status {status}" not in codes:
            codes.append(f"status {status}")
        code = getattr(current, "code", None)
        if isinstance(code, str) and re.fullmatch(r"[a-z][a-z0-9_]{0,40}", code) and code not in codes:
            codes.append(code)
        wrapped = getattr(current, "orig", None)
        current = wrapped if isinstance(wrapped, BaseException) else current.__cause__
    return codes


def describe_error(exc: BaseException, *, limit: int = MAX_MESSAGE) -> str:
    """An error as logs and dead letters tell it: class, codes (SQLSTATE, HTTP status) and a scrubbed message."""
    codes = _codes(exc)
    head = type(exc).__name__ + (f" ({', '.join(codes)})" if codes else "")
    message = scrub_text(str(exc), limit=limit)
    return f"{head}: {message}" if message else head


def format_exception(exc: BaseException) -> str:
    """A traceback whose frames (code) are kept and whose exception lines are :func:`describe_error`."""
    seen: set[int] = set()

    def chain(e: BaseException) -> list[str]:
        seen.add(id(e))
        out: list[str] = []
        if e.__cause__ is not None and id(e.__cause__) not in seen:
            out += [*chain(e.__cause__), "\nThe above exception was the direct cause of the following exception:\n\n"]
        elif e.__context__ is not None and not e.__suppress_context__ and id(e.__context__) not in seen:
            out += [*chain(e.__context__), "\nDuring handling of the above exception, another exception occurred:\n\n"]
        if e.__traceback__ is not None:
            out += ["Traceback (most recent call last):\n", *traceback.format_tb(e.__traceback__)]
        out.append(describe_error(e) + "\n")
        return out

    return "".join(chain(exc)).rstrip("\n")


_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def _scrub_value(value: Any) -> Any:
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, BaseException):
        return describe_error(value)
    return scrub_text(str(value))


class ScrubFilter(logging.Filter):
    """Scrubs every record a handler emits: the arguments of its message, the values of its ``extra``
    fields and its exception (the message template and the keys are code and stay)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = scrub_template(record.msg)
        else:
            record.msg = _scrub_value(record.msg)
        if isinstance(record.args, dict):
            record.args = {k: _scrub_value(v) for k, v in record.args.items()}
        elif record.args:
            record.args = tuple(_scrub_value(a) for a in record.args)
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD and not key.startswith("_"):
                record.__dict__[key] = _scrub_value(value)
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = format_exception(record.exc_info[1])
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = scrub_text(record.exc_text, limit=20_000)
        return True
