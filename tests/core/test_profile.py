import json
from pathlib import Path

import pytest

from clockwork.core.errors import InvalidInputError
from clockwork.core.profile import (
    V100_32GB,
    DeviceKind,
    ModelProfile,
    load_profile,
    save_profile,
    shipped_profile,
)


def test_shipped_resnet50_matches_the_paper() -> None:
    p = shipped_profile("resnet50_v2-V100-32GB")
    assert p.weights_bytes == 102_160_300
    assert p.weights_pages == 7
    assert p.pages_for(V100_32GB) == 7
    assert p.exec_ns == {1: 2_730_000, 2: 4_050_000, 4: 5_880_000, 8: 9_930_000, 16: 17_330_000}
    assert p.load_ns == 8_300_000
    assert "Clockwork authors" in p.measured.by
    assert V100_32GB.cache_pages == 1376 and V100_32GB.page_size_bytes == 16 << 20
    assert p.ideal_throughput_rps() == pytest.approx(16 / 0.01733)


def test_round_trip(tmp_path: Path) -> None:
    p = shipped_profile("resnet50_v2-V100-32GB")
    save_profile(p, tmp_path / "p.json")
    assert load_profile(tmp_path / "p.json") == p


def test_pages_for_another_page_size() -> None:
    p = shipped_profile("resnet50_v2-V100-32GB")
    small = DeviceKind("tiny", page_size_bytes=1 << 20, cache_pages=500)
    assert p.pages_for(small) == 98  # ceil(102160300 / 1 MiB)


@pytest.mark.parametrize(
    "mutate,needle",
    [
        (lambda d: d.pop("exec_ns"), "malformed profile"),
        (lambda d: d.update(format="other/9"), "format"),
        (lambda d: d.update(exec_ns={"1": -5}), "batch size 1"),
        (lambda d: d.update(exec_ns={}), "lists no batch size"),
        (lambda d: d.update(weights_pages=1), "cannot hold"),
        (lambda d: d.update(load_ns="x"), "malformed profile"),
    ],
)
def test_malformed_profiles_name_the_problem(tmp_path: Path, mutate, needle: str) -> None:  # type: ignore[no-untyped-def]
    d = shipped_profile("resnet50_v2-V100-32GB").to_json()
    mutate(d)
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(d))
    with pytest.raises(InvalidInputError) as e:
        load_profile(f)
    assert needle in str(e.value)
    assert str(f) in str(e.value)


def test_unreadable_profile(tmp_path: Path) -> None:
    f = tmp_path / "x.json"
    f.write_text("{not json")
    with pytest.raises(InvalidInputError, match="cannot read"):
        load_profile(f)
    with pytest.raises(InvalidInputError, match="no shipped profile"):
        shipped_profile("nope")


def test_device_kind_validation() -> None:
    with pytest.raises(InvalidInputError):
        DeviceKind("x", 0, 10)
    assert isinstance(ModelProfile, type)
