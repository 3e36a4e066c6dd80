"""``HOST:PORT`` addresses as the commands take them (``--listen``, ``--workers``)."""

from __future__ import annotations

from clockwork.core.errors import ConfigurationError


def parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigurationError(f"address {text!r} is not of the form HOST:PORT")
    return host, int(port)


def parse_addresses(text: str) -> list[tuple[str, int]]:
    """A comma-separated list of addresses; blanks between commas are ignored."""
    return [parse_address(a.strip()) for a in text.split(",") if a.strip()]
