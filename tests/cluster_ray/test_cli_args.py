"""The ``--ray`` options of ``clockwork serve`` as parsed (no Ray needed)."""

from __future__ import annotations

import argparse

import pytest

from clockwork.cli import serve_cmd
from clockwork.cluster_ray.cli_args import wants_controller_actor
from clockwork.core.errors import ConfigurationError


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    serve_cmd.register(parser.add_subparsers())
    return parser.parse_args(["serve", *argv])


def test_ray_controller_needs_ray() -> None:
    assert not wants_controller_actor(parse())
    assert not wants_controller_actor(parse("--ray"))
    assert wants_controller_actor(parse("--ray", "--ray-controller"))
    assert wants_controller_actor(parse("--ray", "head:6379", "--ray-controller"))
    with pytest.raises(ConfigurationError, match="--ray-controller needs --ray"):
        wants_controller_actor(parse("--ray-controller"))
