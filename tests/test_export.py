"""cgpt-export and its library: presets, both exporters, checkpoints, structure-only exports, the CLI."""

from __future__ import annotations

import json
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from cgpt.cli.export import main as export_main
from cgpt.frontend.export import LogitsOnly, export_gpt, packed_sequence_detection_off, random_gpt2
from cgpt.frontend.nanogpt import build_nanogpt
from cgpt.frontend.presets import PRESETS, get_preset, to_gpt2_config
from cgpt.frontend.torch_export import data_file_for
from cgpt.ir.diagnostics import ExportError
from tests.models import exported_model

TINY = get_preset("gpt-tiny")
SHAPES = [(1, 7), (3, 33)]  # two (batch, seq) pairs: one graph must run both


def reference_logits(module: torch.nn.Module, input_ids: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.from_numpy(input_ids)).numpy()


def tiny_reference(attn: str = "sdpa", seed: int = 0) -> torch.nn.Module:
    config = to_gpt2_config(TINY)
    config._attn_implementation = attn
    return LogitsOnly(random_gpt2(config, seed)).eval()


def assert_matches_torch(path: os.PathLike[str], module: torch.nn.Module, vocab: int) -> None:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for batch, seq in SHAPES:
        ids = rng.integers(0, vocab, size=(batch, seq), dtype=np.int64)
        (logits,) = session.run(["logits"], {"input_ids": ids})
        assert logits.shape == (batch, seq, vocab)
        np.testing.assert_allclose(logits, reference_logits(module, ids), atol=1e-4, rtol=0)


def dims(value_info: onnx.ValueInfoProto) -> list[str | int]:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


# --- presets --------------------------------------------------------------------------------------


def test_presets_have_the_cerebras_shapes() -> None:
    assert get_preset("cerebras-gpt-2.7b").d_head == 80
    assert get_preset("cerebras-gpt-256m").n_head == 17
    assert {p.vocab for n, p in PRESETS.items() if n.startswith("cerebras")} == {50257}
    assert all(p.d_model % p.n_head == 0 for p in PRESETS.values())


def test_unknown_preset_lists_the_valid_names() -> None:
    with pytest.raises(ExportError, match="gpt-tiny.*gpt-micro"):
        get_preset("gpt-huge")


def test_gpt2_config_is_exact_gelu_tied_and_dropout_free() -> None:
    config = to_gpt2_config(get_preset("cerebras-gpt-111m"), n_layer=2)
    assert (config.n_layer, config.n_embd, config.n_head, config.n_inner) == (2, 768, 12, 3072)
    assert config.activation_function == "gelu" and config.layer_norm_epsilon == 1e-5
    assert config.tie_word_embeddings
    assert config.resid_pdrop == config.embd_pdrop == config.attn_pdrop == 0.0


# --- both exporters, several opsets, both attention implementations -------------------------------

EXPORTS = [
    ("torchscript", 14, "sdpa"),
    ("torchscript", 17, "sdpa"),
    ("torchscript", 17, "eager"),
    ("torchscript", 18, "eager"),
    ("torchscript", 20, "sdpa"),
    ("dynamo", 18, "sdpa"),
    ("dynamo", 18, "eager"),
    ("dynamo", 20, "sdpa"),
]


@pytest.mark.parametrize(("exporter", "opset", "attn"), EXPORTS)
def test_tiny_export_runs_in_onnxruntime_like_torch(exporter: str, opset: int, attn: str) -> None:
    path = exported_model("gpt-tiny", exporter, opset=opset, attn=attn)
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    assert {o.domain: o.version for o in model.opset_import}[""] == opset
    assert_matches_torch(path, tiny_reference(attn), TINY.vocab)


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_batch_and_seq_are_named_symbolic_dims(exporter: str) -> None:
    graph = onnx.load(exported_model("gpt-tiny", exporter)).graph
    assert [(v.name, dims(v)) for v in graph.input] == [("input_ids", ["batch", "seq"])]
    assert [(v.name, dims(v)) for v in graph.output] == [("logits", ["batch", "seq", TINY.vocab])]
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT64


def test_parameters_keep_hf_names_and_biases_survive(tiny_dynamo) -> None:
    names = {i.name for i in onnx.load(tiny_dynamo).graph.initializer}
    # exact-zero biases would have been dropped by the exporter's optimiser
    assert {
        "transformer.h.1.attn.c_attn.bias",
        "transformer.h.1.ln_2.weight",
        "transformer.ln_f.bias",
    } <= names


@pytest.mark.parametrize(
    ("exporter", "opset"), [("dynamo", 14), ("dynamo", 17), ("torchscript", 13), ("torchscript", 21)]
)
def test_unsupported_opsets_are_refused(tmp_path, exporter: str, opset: int) -> None:
    with pytest.raises(ExportError, match=f"opset {opset}"):
        export_gpt(tmp_path / "m.onnx", preset=TINY, exporter=exporter, opset=opset)
    assert not list(tmp_path.iterdir())


def test_torchscript_needs_packed_sequence_detection_off(tmp_path) -> None:
    """transformers 5 calls torch.diff to detect packed rows; TorchScript has no symbolic for it."""
    from transformers import masking_utils

    original = masking_utils.find_packed_sequence_indices
    with pytest.raises(Exception, match="aten::diff"):
        torch.onnx.export(
            tiny_reference(),
            (torch.zeros((1, 8), dtype=torch.int64),),
            str(tmp_path / "m.onnx"),
            dynamo=False,
            opset_version=17,
        )
    with packed_sequence_detection_off():
        assert masking_utils.find_packed_sequence_indices(torch.arange(8)[None]) is None
    assert masking_utils.find_packed_sequence_indices is original


def test_seq_len_beyond_the_context_is_refused(tmp_path) -> None:
    with pytest.raises(ExportError, match="seq_len"):
        export_gpt(tmp_path / "m.onnx", preset=TINY, exporter="torchscript", seq_len=TINY.n_ctx + 1)


def test_large_weights_go_to_one_side_file(tmp_path, monkeypatch) -> None:
    import cgpt.frontend.torch_export as torch_export

    monkeypatch.setattr(torch_export, "EXTERNAL_DATA_THRESHOLD", 0)  # pretend gpt-tiny is over 2 GB
    path = export_gpt(tmp_path / "m.onnx", preset=TINY, exporter="torchscript")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.data"]
    locations = {
        e.value
        for t in onnx.load(path, load_external_data=False).graph.initializer
        for e in t.external_data
        if e.key == "location"
    }
    assert locations == {"m.onnx.data"}
    assert_matches_torch(path, tiny_reference(), TINY.vocab)


# --- nanoGPT --------------------------------------------------------------------------------------


def test_nanogpt_opset14_spells_layer_norm_as_arithmetic(nanogpt_opset14) -> None:
    model = onnx.load(nanogpt_opset14)
    onnx.checker.check_model(model, full_check=True)
    ops = {n.op_type for n in model.graph.node}
    assert {"ReduceMean", "Pow", "Sqrt", "Div", "Erf", "Split", "Where", "Softmax"} <= ops
    assert "LayerNormalization" not in ops
    assert_matches_torch(nanogpt_opset14, build_nanogpt(TINY, seed=0), TINY.vocab)


# --- HF checkpoints -------------------------------------------------------------------------------


def test_safetensors_checkpoint_round_trips(tmp_path) -> None:
    reference = random_gpt2(to_gpt2_config(TINY), seed=7)
    reference.save_pretrained(tmp_path / "ckpt", safe_serialization=True)
    path = export_gpt(tmp_path / "m.onnx", hf_checkpoint=tmp_path / "ckpt", exporter="torchscript")
    assert_matches_torch(path, LogitsOnly(reference).eval(), TINY.vocab)


def test_pickle_only_checkpoint_is_refused(tmp_path) -> None:
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(json.dumps(to_gpt2_config(TINY).to_dict()))
    torch.save({"transformer.wte.weight": torch.zeros(1)}, ckpt / "pytorch_model.bin")
    with pytest.raises(ExportError, match="refusing pickled weights"):
        export_gpt(tmp_path / "m.onnx", hf_checkpoint=ckpt)
    assert not (tmp_path / "m.onnx").exists()


# --- structure-only exports -----------------------------------------------------------------------


def check_structure_only(path: os.PathLike[str], expected_shapes: dict[str, list[int]]) -> None:
    """Every parameter declared with its true shape, as external data inside one sparse side file."""
    onnx.checker.check_model(str(path))
    model = onnx.load(str(path), load_external_data=False)
    data = data_file_for(path)
    size = data.stat().st_size
    external = {}
    for tensor in model.graph.initializer:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in tensor.external_data}
        assert info["location"] == data.name
        offset, length = int(info["offset"]), int(info["length"])
        assert length == np.prod(tensor.dims, dtype=np.int64) * 4 and offset + length <= size
        external[tensor.name] = list(tensor.dims)
    for name, shape in expected_shapes.items():
        assert external[name] == shape, name
    assert data.stat().st_blocks * 512 < 1 << 20  # nothing written: a hole of the declared size
    assert {p.key: p.value for p in model.metadata_props}["cgpt.weights"] == "none"


def test_no_weights_tiny_has_the_real_graph(tmp_path, tiny_dynamo) -> None:
    path = export_gpt(tmp_path / "tiny.onnx", preset=TINY, no_weights=True)
    real = onnx.load(tiny_dynamo).graph
    shapes = {
        t.name: list(t.dims) for t in real.initializer if t.name.startswith(("transformer.", "lm_head."))
    }
    check_structure_only(path, shapes)
    ops = [n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node]
    assert ops == [n.op_type for n in real.node]
    assert data_file_for(path).stat().st_size >= 4 * sum(int(np.prod(s)) for s in shapes.values())


def test_no_weights_needs_dynamo(tmp_path) -> None:
    with pytest.raises(ExportError, match="dynamo"):
        export_gpt(tmp_path / "m.onnx", preset=TINY, exporter="torchscript", no_weights=True)


@pytest.mark.slow
def test_no_weights_cerebras_1_3b(tmp_path) -> None:
    p = get_preset("cerebras-gpt-1.3b")
    path = export_gpt(tmp_path / "1.3b.onnx", preset=p, no_weights=True)
    check_structure_only(
        path,
        {
            "transformer.wpe.weight": [p.n_ctx, p.d_model],
            "transformer.h.23.attn.c_attn.weight": [p.d_model, 3 * p.d_model],
            "transformer.h.23.mlp.c_fc.weight": [p.d_model, p.d_ff],
            "transformer.h.23.mlp.c_proj.bias": [p.d_model],
            "transformer.ln_f.weight": [p.d_model],
        },
    )
    assert data_file_for(path).stat().st_size >= 4 * 1_300_000_000


# --- CLI ------------------------------------------------------------------------------------------


def test_cli_help_exits_0_with_examples(capsys) -> None:
    assert export_main(["--help"]) == 0
    assert "examples:" in capsys.readouterr().out


def test_cli_unknown_model_is_one_error_line(tmp_path, capsys) -> None:
    assert export_main(["--model", "gpt-huge", "-o", str(tmp_path / "m.onnx")]) == 1
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and err.startswith("error: unknown model 'gpt-huge'")


def test_cli_refuses_to_overwrite_without_force(tmp_path, capsys) -> None:
    target = tmp_path / "m.onnx"
    target.write_bytes(b"precious")
    assert export_main(["--model", "gpt-tiny", "-o", str(target)]) == 1
    assert target.read_bytes() == b"precious"
    assert "--force" in capsys.readouterr().err


def test_cli_force_writes_path_and_summary_on_stdout(tmp_path, capsys) -> None:
    target = tmp_path / "m.onnx"
    target.write_bytes(b"old")
    assert (
        export_main(["--model", "gpt-micro", "--exporter", "torchscript", "-o", str(target), "--force"]) == 0
    )
    out = capsys.readouterr().out.splitlines()
    assert out[0] == str(target) and "nodes" in out[1] and "initializers" in out[1] and len(out) == 2
    onnx.checker.check_model(str(target))
