"""Export a HF GPT-2-architecture model (a preset with random weights, or a local checkpoint) to ONNX.

    export_gpt("tiny.onnx", preset=get_preset("gpt-tiny"))                      # dynamo, opset 18
    export_gpt("111m.onnx", preset=get_preset("cerebras-gpt-111m"), exporter="torchscript")
    export_gpt("13b.onnx", preset=get_preset("cerebras-gpt-13b"), no_weights=True)  # graph + sparse data file
    export_gpt("ckpt.onnx", hf_checkpoint="path/to/checkpoint")                 # config.json + *.safetensors

One input `input_ids` (int64 [batch, seq]), one output `logits` ([batch, seq, vocab]), no KV cache.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel, masking_utils

from cgpt.frontend.presets import GPTPreset, to_gpt2_config
from cgpt.frontend.torch_export import check_exporter, trace_to_onnx, write_onnx
from cgpt.ir.diagnostics import ExportError

ATTENTION_IMPLEMENTATIONS = ("sdpa", "eager")
# HF init leaves biases 0 and LayerNorm 1/0; exporters would drop "zero" biases and merge "equal" tensors
BIAS_NOISE_STD = 0.02
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


class LogitsOnly(torch.nn.Module):
    """input_ids -> logits of a GPT2LMHeadModel: no cache, no mask input, HF's parameter names kept."""

    def __init__(self, model: GPT2LMHeadModel) -> None:
        super().__init__()
        self.transformer = model.transformer
        self.lm_head = model.lm_head

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        hidden = self.transformer(input_ids=input_ids, use_cache=False).last_hidden_state
        return self.lm_head(hidden)


def export_gpt(
    out_path: str | os.PathLike[str],
    *,
    preset: GPTPreset | None = None,
    hf_checkpoint: str | os.PathLike[str] | None = None,
    exporter: str = "dynamo",
    opset: int | None = None,
    layers: int | None = None,
    seq_len: int | None = None,
    batch: int = 1,
    attn_implementation: str = "sdpa",
    no_weights: bool = False,
    seed: int = 0,
    on_stage: Callable[[str], None] | None = None,
) -> Path:
    """Export a GPT-2 model to `out_path` and return the path.

    `seq_len` and `batch` shape the example input used for tracing (the graph stays dynamic in both);
    `seq_len` defaults to min(128, n_ctx). `no_weights` writes the graph with every parameter as external
    data in a sparse `<name>.onnx.data` that is never filled (structure only, for the large presets).
    `on_stage` is called with "build", "trace" and "write" as each stage starts.
    """
    stage = on_stage or (lambda _name: None)
    opset = check_exporter(exporter, opset)
    if attn_implementation not in ATTENTION_IMPLEMENTATIONS:
        raise ExportError(
            f"unknown attention '{attn_implementation}' (valid: {', '.join(ATTENTION_IMPLEMENTATIONS)})"
        )
    if (preset is None) == (hf_checkpoint is None):
        raise ExportError("give exactly one of a preset or an HF checkpoint directory")
    if no_weights and exporter != "dynamo":
        raise ExportError("a structure-only (no-weights) export needs the dynamo exporter")
    out = Path(out_path)
    _check_output_dir(out)

    stage("build")
    config, source = _config_for(preset, hf_checkpoint, layers)
    config._attn_implementation = attn_implementation
    example = (batch, _example_seq_len(seq_len, config.n_positions, batch))
    if no_weights:
        model, weights = _placeholder_model(config), "none"
    elif hf_checkpoint is not None:
        model, weights = _load_checkpoint(Path(hf_checkpoint), config, attn_implementation), "checkpoint"
    else:
        model, weights = random_gpt2(config, seed), f"random seed={seed}"
    module = LogitsOnly(model).eval()
    metadata = {
        "cgpt.source": source,
        "cgpt.exporter": exporter,
        "cgpt.attention": attn_implementation,
        "cgpt.weights": weights,
    }
    placeholders = frozenset(name for name, _ in module.named_parameters(remove_duplicate=False))

    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as staging:
        stage("trace")
        with packed_sequence_detection_off():
            onnx_model = trace_to_onnx(
                module,
                exporter=exporter,
                opset=opset,
                example_shape=example,
                max_seq=config.n_positions,
                staging_dir=Path(staging),
            )
        stage("write")
        return write_onnx(
            onnx_model, out, placeholders=placeholders if no_weights else frozenset(), metadata=metadata
        )


@contextlib.contextmanager
def packed_sequence_detection_off() -> Iterator[None]:
    """Tell transformers' masking code that no row packs several sequences, for the duration.

    Our graphs take no position_ids, so positions are always 0..seq-1 and the detector's answer is known.
    Left on, it calls torch.diff (no TorchScript ONNX symbolic: "aten::diff is not supported") and, under
    dynamo, ANDs a CumSum-built same-sequence mask into the causal mask, hiding the plain causal pattern.
    """
    original = getattr(masking_utils, "find_packed_sequence_indices", None)
    if original is None:  # older transformers: nothing to switch off
        yield
        return
    masking_utils.find_packed_sequence_indices = lambda position_ids: None
    try:
        yield
    finally:
        masking_utils.find_packed_sequence_indices = original


def _check_output_dir(out: Path) -> None:
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise ExportError(f"output directory '{parent}' does not exist", where=str(out))


def _example_seq_len(seq_len: int | None, n_ctx: int, batch: int) -> int:
    if batch < 1:
        raise ExportError(f"batch must be at least 1, got {batch}")
    if seq_len is None:
        return min(128, n_ctx)
    if not 1 <= seq_len <= n_ctx:
        raise ExportError(f"seq_len must be in 1..{n_ctx} (the model's context), got {seq_len}")
    return seq_len


def random_gpt2(config: GPT2Config, seed: int = 0) -> GPT2LMHeadModel:
    """A GPT2LMHeadModel with HF's seeded init, its 1-D parameters jittered off their exact 0 and 1."""
    with torch.random.fork_rng(devices=[]):  # seed our own draws, leave the caller's RNG as it was
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config).eval()
        with torch.no_grad():
            for param in model.parameters():
                if param.dim() == 1:
                    param.add_(torch.randn(param.shape) * BIAS_NOISE_STD)
    return model


def _placeholder_model(config: GPT2Config) -> GPT2LMHeadModel:
    """The model's structure with parameters that occupy no memory (each a broadcast scalar).

    Built on the meta device, then every parameter becomes a stride-0 view of one distinct non-zero scalar, so
    the dynamo optimiser can read values (it checks for zero biases) without anything being materialised.
    """
    with torch.device("meta"):
        model = GPT2LMHeadModel(config).eval()
    stand_ins: dict[int, torch.nn.Parameter] = {}
    for module in model.modules():
        for name, param in list(module._parameters.items()):
            if param is None:
                continue
            if id(param) not in stand_ins:  # tied weights stay one parameter
                value = torch.full((1,), 0.01 * (len(stand_ins) + 1))
                stand_ins[id(param)] = torch.nn.Parameter(value.expand(param.shape), requires_grad=False)
            module._parameters[name] = stand_ins[id(param)]
        meta_buffers = [name for name, buf in module._buffers.items() if buf is not None and buf.is_meta]
        if meta_buffers:
            raise ExportError(f"cannot export without weights: buffers {meta_buffers} need real values")
    return model


def _config_for(
    preset: GPTPreset | None, hf_checkpoint: str | os.PathLike[str] | None, layers: int | None
) -> tuple[GPT2Config, str]:
    """The model's config and a name for it (the preset's, or the checkpoint directory's)."""
    if hf_checkpoint is not None:
        return _checkpoint_config(Path(hf_checkpoint), layers), Path(hf_checkpoint).resolve().name
    preset = preset if layers is None else preset.with_layers(layers)
    return to_gpt2_config(preset), preset.name


def _checkpoint_config(path: Path, layers: int | None) -> GPT2Config:
    if not path.is_dir():
        raise ExportError("checkpoint directory does not exist", where=str(path))
    if not (path / "config.json").is_file():
        raise ExportError("no config.json in the checkpoint directory", where=str(path))
    config = GPT2Config.from_pretrained(path, local_files_only=True)
    if config.model_type != "gpt2":
        raise ExportError(
            f"checkpoint is model_type '{config.model_type}', only 'gpt2' is supported", where=str(path)
        )
    if layers is not None:
        if not 1 <= layers <= config.n_layer:
            raise ExportError(f"layers must be in 1..{config.n_layer} for this checkpoint, got {layers}")
        config.n_layer = layers
    config.use_cache = False
    return config


def _load_checkpoint(path: Path, config: GPT2Config, attn_implementation: str) -> GPT2LMHeadModel:
    """Load safetensors weights from a local directory; pickled weights are refused, no hub is ever asked."""
    if not list(path.glob("*.safetensors")):
        pickles = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise ExportError(
                f"refusing pickled weights ({', '.join(pickles)}): unpickling can run arbitrary code; "
                "convert the checkpoint to safetensors (save_pretrained(..., safe_serialization=True))",
                where=str(path),
            )
        raise ExportError("no *.safetensors weights in the checkpoint directory", where=str(path))
    model, info = GPT2LMHeadModel.from_pretrained(
        path,
        config=config,
        local_files_only=True,
        use_safetensors=True,
        dtype=torch.float32,
        attn_implementation=attn_implementation,
        output_loading_info=True,
    )
    missing = [k for k in info.get("missing_keys", ()) if k != "lm_head.weight"]
    if missing:
        raise ExportError(f"checkpoint lacks {len(missing)} weights (first: {missing[0]})", where=str(path))
    return model.eval()
