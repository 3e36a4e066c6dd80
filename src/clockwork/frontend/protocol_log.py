"""The HTTP front door's protocol log: a malformed request is one line, never a traceback.

aiohttp logs every request it cannot parse (a bad header, chunk size or URL, a line too long)
with the parser's traceback at ERROR ("Error handling request"): a client's mistake, or a
scanner's, then looks like a server failure and fills the log. The requests it answers 400 for
(``HttpProcessingError``) are logged here as one INFO line with the parser's message; anything
else keeps its traceback.
"""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError

LOGGER_NAME = "clockwork.frontend.http.protocol"


class OneLineBadRequests(logging.Filter):
    """Rewrites the records of malformed requests as one line without a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            detail = " ".join(str(exc.message).split())
            record.msg = f"{record.getMessage()}: malformed request ({exc.code}): {detail}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
            record.levelno = logging.INFO
            record.levelname = logging.getLevelName(logging.INFO)
        return True


def protocol_logger() -> logging.Logger:
    """The logger to give aiohttp's request handlers (``AppRunner(..., logger=...)``)."""
    logger = logging.getLogger(LOGGER_NAME)
    if not any(isinstance(f, OneLineBadRequests) for f in logger.filters):
        logger.addFilter(OneLineBadRequests())
    return logger


__all__ = ["LOGGER_NAME", "OneLineBadRequests", "protocol_logger"]
