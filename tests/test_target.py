"""The mesh target: preset values and sources, TOML loading, an error naming file and key per bad field."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from cgpt.backends.mesh.target import (
    DEFAULT_PRESET,
    Target,
    load_target,
    preset,
    preset_names,
    resolve_target,
)
from cgpt.ir.diagnostics import TargetError

WSE2_TOML = (Path(__file__).parents[1] / "cgpt/backends/mesh/presets/wse2.toml").read_text()


def test_preset_names_are_the_shipped_files() -> None:
    assert preset_names() == ["mesh-16x16", "mesh-32x32", "mesh-64x64", "wse2", "wse3"]


def test_wse2_preset_values() -> None:
    t = preset("wse2")
    assert (t.name, t.width, t.height, t.pes) == ("wse2", 750, 994, 745_500)
    assert (t.sram_bytes_per_pe, t.sram_reserved_bytes, t.sram_usable_bytes_per_pe) == (49_152, 6_144, 43_008)
    assert (t.sram_read_bytes_per_cycle, t.sram_write_bytes_per_cycle) == (16, 8)
    assert dict(t.flops_per_cycle) == {"f32": 2, "f16": 8, "bf16": 8}
    assert t.clock_hz == 850e6
    assert (t.link_bytes_per_cycle, t.hop_latency_cycles, t.ramp_latency_cycles) == (4, 1, 2)
    assert t.routing_colors == 24
    assert t.stream_bytes_per_s == 150e9  # 1.2 Tb/s


def test_wse3_differs_from_wse2_only_in_size_compute_and_clock() -> None:
    w2, w3 = preset("wse2"), preset("wse3")
    assert (w3.width, w3.height, w3.flops_per_cycle["f16"], w3.flops_per_cycle["bf16"], w3.clock_hz) == (
        755, 1170, 16, 16, 875e6)
    same = dataclasses.replace(w2, name="wse3", description=w3.description, width=755, height=1170,
                               clock_hz=875e6, flops_per_cycle={"f32": 2, "f16": 16, "bf16": 16})
    assert same == w3


@pytest.mark.parametrize("n", [16, 32, 64])
def test_small_meshes_keep_wse2_per_pe_parameters(n: int) -> None:
    small = preset(f"mesh-{n}x{n}")
    assert small == dataclasses.replace(preset("wse2"), name=f"mesh-{n}x{n}", description=small.description,
                                        width=n, height=n)


def test_presets_cite_their_sources_in_comments() -> None:
    sources = ("[Cerebras csl-examples]", "[Hot Chips 34]", "[SC20; HPDC'24]", "[ANL]", "1.2 Tb/s", "6 KiB")
    for source in sources:
        assert source in WSE2_TOML


def test_peak_flops_is_whole_mesh_per_second() -> None:
    t = preset("wse2")
    assert t.peak_flops("f16") == 8 * 850e6 * 750 * 994
    assert t.peak_flops("f32") == 2 * 850e6 * 750 * 994
    with pytest.raises(TargetError, match="dtype 'i8' has no compute rate"):
        t.peak_flops("i8")


def test_pes_for_bytes_rounds_up_over_usable_sram() -> None:
    t = preset("wse2")
    assert t.pes_for_bytes(0) == 1
    assert t.pes_for_bytes(43_008) == 1
    assert t.pes_for_bytes(43_009) == 2
    assert t.pes_for_bytes(768 * 50257 * 2) == 1795


def test_target_is_frozen_and_hashable() -> None:
    t = preset("wse2")
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.width = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        t.flops_per_cycle["f16"] = 1  # type: ignore[index]
    assert hash(t) == hash(preset("wse2"))
    assert isinstance(t, Target)


def test_resolve_target_prefers_the_config_file_and_defaults_to_wse2(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(WSE2_TOML.replace('name = "wse2"', 'name = "mine"').replace("width = 750", "width = 12"))
    assert resolve_target(None, str(path)).width == 12
    assert resolve_target("wse3", None).name == "wse3"
    assert resolve_target(preset="mesh-16x16").width == 16
    assert resolve_target(None, None).name == DEFAULT_PRESET == "wse2"
    with pytest.raises(TargetError, match="not both"):
        resolve_target("wse2", path)


def test_name_defaults_to_the_file_stem(tmp_path: Path) -> None:
    path = tmp_path / "lab-mesh.toml"
    path.write_text(WSE2_TOML.replace('name = "wse2"\n', ""))
    assert load_target(path).name == "lab-mesh"


def test_unknown_preset_lists_the_known_ones() -> None:
    with pytest.raises(TargetError, match="unknown target preset 'wse9'; known: mesh-16x16, .*wse2, wse3"):
        preset("wse9")


def _bad(tmp_path: Path, text: str) -> str:
    path = tmp_path / "wse2.toml"
    path.write_text(text)
    with pytest.raises(TargetError) as info:
        load_target(path)
    message = str(info.value)
    assert message.startswith(f"{path}: error: ")
    return message


def test_unknown_key_names_file_key_and_allowed_keys(tmp_path: Path) -> None:
    message = _bad(tmp_path, WSE2_TOML.replace("width = 750", "widht = 750"))
    assert "key 'widht' is unknown; allowed: name, description, width, height, sram_bytes_per_pe" in message


def test_missing_key_names_it(tmp_path: Path) -> None:
    message = _bad(tmp_path, WSE2_TOML.replace("routing_colors = 24", ""))
    assert "key 'routing_colors' is missing; required: width, height," in message


@pytest.mark.parametrize(("line", "bad", "expected"), [
    ("width = 750", "width = -750", "key 'width' must be >= 1 (PEs), got -750"),
    ("height = 994", "height = 0", "key 'height' must be >= 1 (PEs), got 0"),
    ("sram_reserved_bytes = 6144", "sram_reserved_bytes = -1",
     "key 'sram_reserved_bytes' must be >= 0 (bytes)"),
    ("clock_hz = 850e6", "clock_hz = 0", "key 'clock_hz' must be a finite number > 0 (Hz), got 0"),
    ("link_bytes_per_cycle = 4", "link_bytes_per_cycle = -4.0",
     "key 'link_bytes_per_cycle' must be a finite"),
    ("stream_bytes_per_s = 150e9", "stream_bytes_per_s = nan", "key 'stream_bytes_per_s' must be a finite"),
])
def test_negative_or_zero_sizes_are_rejected(tmp_path: Path, line: str, bad: str, expected: str) -> None:
    assert expected in _bad(tmp_path, WSE2_TOML.replace(line, bad))


@pytest.mark.parametrize(("line", "bad", "expected"), [
    ("width = 750", 'width = "750"', "key 'width' must be an integer (PEs), got string '750'"),
    ("width = 750", "width = 750.0", "key 'width' must be an integer (PEs), got float 750.0"),
    ("routing_colors = 24", "routing_colors = true",
     "key 'routing_colors' must be an integer (colors), got boolean"),
    ("clock_hz = 850e6", 'clock_hz = "fast"', "key 'clock_hz' must be a number (Hz), got string 'fast'"),
    ('name = "wse2"', "name = 2", "key 'name' must be a string, got integer 2"),
])
def test_wrong_types_are_rejected(tmp_path: Path, line: str, bad: str, expected: str) -> None:
    assert expected in _bad(tmp_path, WSE2_TOML.replace(line, bad))


def test_flops_table_keys_are_checked(tmp_path: Path) -> None:
    assert "key 'flops_per_cycle.f8' is unknown; allowed: f32, f16, bf16" in _bad(
        tmp_path, WSE2_TOML.replace("bf16 = 8", "bf16 = 8\nf8 = 32"))
    assert "key 'flops_per_cycle.bf16' is missing; required: f32, f16, bf16" in _bad(
        tmp_path, WSE2_TOML.replace("bf16 = 8", ""))
    assert "key 'flops_per_cycle.f16' must be a finite number > 0 (FLOP/cycle/PE), got 0" in _bad(
        tmp_path, WSE2_TOML.replace("\nf16 = 8", "\nf16 = 0"))
    table_start = WSE2_TOML.index("[flops_per_cycle]")
    flat = WSE2_TOML[:table_start] + "flops_per_cycle = 8\n"
    assert "key 'flops_per_cycle' must be a table" in _bad(tmp_path, flat)


def test_reserved_sram_must_leave_room(tmp_path: Path) -> None:
    message = _bad(tmp_path, WSE2_TOML.replace("sram_reserved_bytes = 6144", "sram_reserved_bytes = 49152"))
    assert "key 'sram_reserved_bytes' must be < sram_bytes_per_pe (49152 bytes), got 49152" in message


def test_invalid_toml_and_missing_files(tmp_path: Path) -> None:
    assert "not valid TOML" in _bad(tmp_path, "width = = 3")
    with pytest.raises(TargetError, match="cannot read target file"):
        load_target(tmp_path / "absent.toml")
