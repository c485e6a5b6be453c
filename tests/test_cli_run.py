"""cgpt-run: the reference backend and onnxruntime agree; bad inputs give one `error:` line and exit 1."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from cgpt.cli.common import EXIT_ERROR, EXIT_OK, EXIT_USAGE
from cgpt.cli.run import main

VOCAB, D = 50, 16


@pytest.fixture(scope="module")
def toy_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """input_ids [batch, seq] -> logits [batch, seq, 50]: an embedding, a GELU layer, a tied LM head."""
    rng = np.random.default_rng(0)
    wte = rng.standard_normal((VOCAB, D)).astype(np.float32)
    w1 = rng.standard_normal((D, D)).astype(np.float32) / 4
    nodes = [
        helper.make_node("Gather", ["wte", "input_ids"], ["h"], name="/embed"),
        helper.make_node("MatMul", ["h", "w1"], ["a"], name="/fc"),
        helper.make_node("Gelu", ["a"], ["g"], name="/gelu"),
        helper.make_node("Add", ["h", "g"], ["r"], name="/residual"),
        helper.make_node("Transpose", ["wte"], ["wte_t"], perm=[1, 0], name="/tie"),
        helper.make_node("MatMul", ["r", "wte_t"], ["logits"], name="/lm_head"),
    ]
    graph = helper.make_graph(
        nodes,
        "toy",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "seq", VOCAB])],
        [numpy_helper.from_array(wte, "wte"), numpy_helper.from_array(w1, "w1")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 9
    path = tmp_path_factory.mktemp("toy") / "toy.onnx"
    onnx.save(model, path)
    return path


def _ids(*shape: int) -> np.ndarray:
    return np.random.default_rng(1).integers(0, VOCAB, size=shape).astype(np.int64)


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def test_reference_and_onnxruntime_agree(
    toy_lm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    np.savez(tmp_path / "in.npz", input_ids=_ids(2, 7))
    for backend in ("reference", "onnxruntime"):
        code, err = _run(
            [
                str(toy_lm),
                "--backend",
                backend,
                "--inputs",
                str(tmp_path / "in.npz"),
                "--output",
                str(tmp_path / f"{backend}.npz"),
                "-q",
            ],
            capsys,
        )
        assert code == EXIT_OK, err
    ref, ort = np.load(tmp_path / "reference.npz"), np.load(tmp_path / "onnxruntime.npz")
    assert ref.files == ort.files == ["logits"]
    assert ref["logits"].shape == (2, 7, VOCAB)
    assert np.abs(ref["logits"] - ort["logits"]).max() <= 1e-4


def test_random_inputs_are_deterministic(
    toy_lm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outs = []
    for i, backend in enumerate(("reference", "onnxruntime", "reference")):
        out = tmp_path / f"{i}.npz"
        code, err = _run(
            [str(toy_lm), "--backend", backend, "--shape", "input_ids=1x5", "--output", str(out)], capsys
        )
        assert code == EXIT_OK, err
        assert "note: " in err
        outs.append(np.load(out)["logits"])
    assert outs[0].shape == (1, 5, VOCAB)
    assert np.array_equal(outs[0], outs[2]) and np.abs(outs[0] - outs[1]).max() <= 1e-4


@pytest.mark.parametrize("backend", ["reference", "onnxruntime"])
@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        (
            {"ids": _ids(1, 4)},
            "error: missing input 'input_ids'; unknown input 'ids' (expected inputs: input_ids)",
        ),
        (
            {"input_ids": _ids(4)},
            "error: input 'input_ids' has shape [4] (rank 1), expected tensor<?batchx?seqxi64> (rank 2)",
        ),
        (
            {"input_ids": _ids(1, 4).astype(np.int32)},
            "error: input 'input_ids' has dtype i32, expected i64 (type tensor<?batchx?seqxi64>)",
        ),
        (
            {"input_ids": _ids(1, 4).astype(np.float64)},
            "error: input 'input_ids' has dtype float64, expected i64 (type tensor<?batchx?seqxi64>)",
        ),
    ],
    ids=["name", "shape", "dtype", "float64"],
)
def test_bad_inputs_give_one_error_line(
    toy_lm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], backend: str, arrays: dict, message: str
) -> None:
    np.savez(tmp_path / "in.npz", **arrays)
    code, err = _run(
        [
            str(toy_lm),
            "--backend",
            backend,
            "--inputs",
            str(tmp_path / "in.npz"),
            "--output",
            str(tmp_path / "out.npz"),
        ],
        capsys,
    )
    assert code == EXIT_ERROR
    assert err.strip() == message
    assert not (tmp_path / "out.npz").exists()


def test_symbolic_dims_must_bind_consistently(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["c"])],
        "g",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", "seq"]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, ["batch", "seq"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, tmp_path / "add.onnx")
    np.savez(tmp_path / "in.npz", a=np.zeros((2, 3), np.float32), b=np.zeros((2, 4), np.float32))
    code, err = _run([str(tmp_path / "add.onnx"), "--inputs", str(tmp_path / "in.npz")], capsys)
    assert code == EXIT_ERROR
    assert err.strip() == (
        "error: input 'b' has shape [2, 4]: dim 1 (?seq) is 4, but input 'a' binds ?seq to 3"
    )


def test_missing_files_exit_1(toy_lm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run([str(tmp_path / "absent.onnx"), "--shape", "input_ids=1x4"], capsys)
    assert (code, err.strip()) == (EXIT_ERROR, f"{tmp_path / 'absent.onnx'}: error: no such file")
    code, err = _run([str(toy_lm), "--inputs", str(tmp_path / "absent.npz")], capsys)
    assert (code, err.strip()) == (EXIT_ERROR, f"{tmp_path / 'absent.npz'}: error: no such file")


def test_symbolic_input_without_shape_or_inputs_is_an_error(
    toy_lm: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _run([str(toy_lm)], capsys)
    assert code == EXIT_ERROR
    assert err.strip() == (
        "error: input 'input_ids' is tensor<?batchx?seqxi64>: give its dims with "
        "--shape input_ids=DIMS or pass --inputs"
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["--backend", "tpu"],
        ["--shape", "input_ids=1xq"],
        ["--shape", "input_ids"],
        ["--shape", "input_ids=0x4"],
        ["--no-such-option"],
    ],
)
def test_bad_options_exit_2(toy_lm: Path, capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, err = _run([str(toy_lm), *argv], capsys)
    assert code == EXIT_USAGE
    assert "error:" in err


def test_onnxruntime_refuses_ir_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "m.cgir").write_text("")
    code, err = _run([str(tmp_path / "m.cgir"), "--backend", "onnxruntime"], capsys)
    assert (code, err.strip()) == (
        EXIT_ERROR,
        f"{tmp_path / 'm.cgir'}: error: the onnxruntime backend runs .onnx models only",
    )


def test_gpt_tiny_export_on_both_backends(
    tiny_torchscript: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    np.savez(
        tmp_path / "in.npz", input_ids=np.random.default_rng(2).integers(0, 512, (2, 9)).astype(np.int64)
    )
    outs = {}
    for backend in ("reference", "onnxruntime"):
        out = tmp_path / f"{backend}.npz"
        code, err = _run(
            [
                str(tiny_torchscript),
                "--backend",
                backend,
                "--inputs",
                str(tmp_path / "in.npz"),
                "--output",
                str(out),
                "-q",
            ],
            capsys,
        )
        assert code == EXIT_OK, err
        outs[backend] = np.load(out)["logits"]
    assert outs["reference"].shape == (2, 9, 512)
    assert np.abs(outs["reference"] - outs["onnxruntime"]).max() <= 1e-4


def test_ir_file_with_its_weights_sidecar(
    toy_lm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cgpt.frontend.onnx_import import import_onnx
    from cgpt.ir.module_files import write_cgir

    write_cgir(import_onnx(toy_lm), tmp_path / "toy.cgir")
    np.savez(tmp_path / "in.npz", input_ids=_ids(1, 6))
    for model, out in ((tmp_path / "toy.cgir", "ir.npz"), (toy_lm, "onnx.npz")):
        code, err = _run(
            [str(model), "--inputs", str(tmp_path / "in.npz"), "--output", str(tmp_path / out)], capsys
        )
        assert code == EXIT_OK, err
    assert np.array_equal(np.load(tmp_path / "ir.npz")["logits"], np.load(tmp_path / "onnx.npz")["logits"])
