"""Secrets never leave in logs, printed lines, MLflow documents, reports or receipts: one masking function.

What counts as a secret, and why each rule exists:

- the password of a URL (``postgresql://user:PASSWORD@host/db``, ``http://user:PASSWORD@prefect/api``):
  ``ledger.url``, ``tracking.uri``, ``PREFECT_API_URL`` and DVC remote URLs may carry one;
- the value of a URL query parameter whose name says it is a secret (``?password=``, ``?token=``,
  ``?sig=``: SQLAlchemy URLs and pre-signed object-store URLs put credentials there);
- every value of ``versioning.remote_options``: DVC takes access keys, SAS tokens and connection strings
  there under names no pattern can predict, so the keys stay visible and every value is masked;
- the value under any mapping key whose name says it is a secret (``password``, ``secret``, ``token``,
  ``api_key``, ``access_key``, ``credential``...), wherever it appears in a logged document.

The mask keeps everything else, so a masked document still says which store, host and user were used.
Masking is one-way and only for output: the settings themselves are never changed.

Log lines are masked too: :func:`install_log_masking` (called by ``runtime_env.apply``, which every entry
point runs: the CLI, each flow, each intake worker) masks the message and arguments of every log record the
process creates, so an error text that quotes a URL with its password never reaches a log file or Prefect's
run logs. Tracebacks (``exc_info``) are formatted later by each handler and are not covered.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode

MASK = "***"

# a mapping key or query parameter that names a secret (whole snake/kebab-case words, any case)
SECRET_NAME = re.compile(
    r"(^|[_\-.])(pass(word|wd|phrase)?|pwd|secret|token|credentials?|api[_-]?key|access[_-]?key|private[_-]?key|"
    r"account[_-]?key|sas|sig|signature|auth(orization)?|session[_-]?token|connection[_-]?string)($|[_\-.])",
    re.IGNORECASE)
# containers whose every value is masked (see the module docstring)
SECRET_CONTAINERS = frozenset({"remote_options"})
# scheme://user:password@ anywhere in a text (the password ends at the first "@"; RFC 3986 encodes others)
_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s/@:]*:)(?P<password>[^\s/@]+)@")
_URL_QUERY = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s?#]*\?)(?P<query>[^\s#]+)")


def is_secret_name(name: str) -> bool:
    """True when a mapping key or query parameter name says its value is a secret."""
    return bool(SECRET_NAME.search(name))


def mask_text(text: str) -> str:
    """``text`` with every URL password and every secret-named URL query value replaced by ``***``.

    Works on a bare URL and on any line that contains URLs (an error message, a log line).
    """
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}@", text)
    return _URL_QUERY.sub(lambda m: m["head"] + _mask_query(m["query"]), text)


def _mask_query(query: str) -> str:
    pairs = parse_qsl(query, keep_blank_values=True)
    if not any(is_secret_name(k) for k, _ in pairs):
        return query
    return urlencode([(k, MASK if is_secret_name(k) else v) for k, v in pairs], safe="*/:@,")


def _is_secret_value(key: Any, value: Any) -> bool:
    """A scalar (a string or a number, not a flag) under a secret-named key."""
    scalar = isinstance(value, (str, int, float)) and not isinstance(value, bool) and value != ""
    return isinstance(key, str) and scalar and is_secret_name(key)


def mask_secrets(value: Any, _key: str = "") -> Any:
    """A copy of a JSON-like value (dicts, lists, strings, numbers) with every secret masked.

    Args:
        value: what is about to be logged, printed or written (e.g. ``params.model_dump(mode="json")``).

    Returns:
        The same structure; strings are masked with :func:`mask_text`, values under secret-named keys and
        inside :data:`SECRET_CONTAINERS` become ``***``.
    """
    if isinstance(value, dict):
        if _key in SECRET_CONTAINERS:
            return {k: MASK for k in value}
        return {k: (MASK if _is_secret_value(k, v) else mask_secrets(v, str(k))) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_secrets(v) for v in value]
    if isinstance(value, tuple):
        return tuple(mask_secrets(v) for v in value)
    if isinstance(value, str):
        return mask_text(value)
    return value


def install_log_masking() -> None:
    """Mask every log record this process creates from now on (idempotent).

    The message and each string-like argument are masked with :func:`mask_text`; an argument is replaced
    only when masking changes it, so records keep their argument types (uvicorn's access formatter unpacks
    them) and nothing changes for the usual record without a secret.
    """
    previous = logging.getLogRecordFactory()
    if getattr(previous, "forgetflow_masking", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if isinstance(record.msg, str):
            record.msg = mask_text(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_masked_arg(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _masked_arg(v) for k, v in record.args.items()}
        return record

    factory.forgetflow_masking = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def _masked_arg(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float)):
        return value
    text = str(value)
    masked = mask_text(text)
    return value if masked == text else masked
