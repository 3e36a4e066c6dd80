"""Each worker actor's devices, reserved through a Ray placement group of one bundle on its node
(``STRICT_PACK``, pinned by Ray's ``ray.io/node-id`` label): Ray restarts the actor inside its
group, so a restarted worker gets the same devices back, and nothing else can take them while
the worker lives. The group is removed when the worker is let go."""

from __future__ import annotations

import contextlib
from typing import Any

from clockwork.cluster_ray.placement import Placement

#: the label every Ray node carries with its id
NODE_ID_LABEL = "ray.io/node-id"


def reserve(placement: Placement, name: str | None, detached: bool) -> Any:
    """The placement group for ``placement`` (created now, ready when Ray has the resources).
    ``name``: a group of that name is reused if one exists (a restarted controller finds its
    workers' groups again); ``detached``: it outlives this process (with its workers)."""
    from ray.util.placement_group import get_placement_group, placement_group

    if name is not None:
        with contextlib.suppress(ValueError):  # none of that name yet
            return get_placement_group(name)
    return placement_group(
        [placement.bundle],
        strategy="STRICT_PACK",
        name=name or "",
        lifetime="detached" if detached else None,
        bundle_label_selector=[{NODE_ID_LABEL: placement.node_id}],
    )


def scheduling(group: Any) -> Any:
    """The scheduling strategy that puts an actor into ``group``'s bundle."""
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    return PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=0)


def release(group: Any) -> None:
    """Remove ``group`` (its devices go back to Ray); one already gone is no error."""
    from ray.util.placement_group import remove_placement_group

    with contextlib.suppress(Exception):
        remove_placement_group(group)
