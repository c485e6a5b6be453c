"""A nanoGPT-style GPT of our own (Karpathy's layout): a second, differently-spelled ONNX source.

It computes what the HF GPT-2 computes but spells it the hand-written way, so its ONNX export shows the
unfused forms fusion must also recognise: LayerNorm as mean/variance arithmetic, the causal mask as a slice
of a registered lower-triangular buffer plus masked_fill, q/k/v from one Linear and a split, exact
nn.GELU, a tied head.

    export_nanogpt("nano.onnx", get_preset("gpt-tiny"))          # torchscript, opset 14
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from cgpt.frontend.presets import GPTPreset, get_preset
from cgpt.frontend.torch_export import check_exporter, trace_to_onnx, write_onnx
from cgpt.ir.diagnostics import ExportError

LAYER_NORM_EPS = 1e-5
INIT_STD = 0.02


class LayerNorm(nn.Module):
    """LayerNorm over the last axis as arithmetic: ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centered = x - x.mean(-1, keepdim=True)
        var = centered.pow(2).mean(-1, keepdim=True)
        return centered / torch.sqrt(var + LAYER_NORM_EPS) * self.weight + self.bias


class CausalSelfAttention(nn.Module):
    def __init__(self, p: GPTPreset) -> None:
        super().__init__()
        self.n_head, self.d_model = p.n_head, p.d_model
        self.c_attn = nn.Linear(p.d_model, 3 * p.d_model)
        self.c_proj = nn.Linear(p.d_model, p.d_model)
        self.register_buffer("bias", torch.tril(torch.ones(p.n_ctx, p.n_ctx)).view(1, 1, p.n_ctx, p.n_ctx))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.d_model, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf"))
        att = F.softmax(att, dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, p: GPTPreset) -> None:
        super().__init__()
        self.c_fc = nn.Linear(p.d_model, p.d_ff)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(p.d_ff, p.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, p: GPTPreset) -> None:
        super().__init__()
        self.ln_1 = LayerNorm(p.d_model)
        self.attn = CausalSelfAttention(p)
        self.ln_2 = LayerNorm(p.d_model)
        self.mlp = MLP(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class NanoGPT(nn.Module):
    """input_ids [batch, seq] -> logits [batch, seq, vocab]; the LM head shares the token embedding."""

    def __init__(self, p: GPTPreset) -> None:
        super().__init__()
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(p.vocab, p.d_model),
                wpe=nn.Embedding(p.n_ctx, p.d_model),
                h=nn.ModuleList(Block(p) for _ in range(p.n_layer)),
                ln_f=LayerNorm(p.d_model),
            )
        )
        self.lm_head = nn.Linear(p.d_model, p.vocab, bias=False)
        self.lm_head.weight = self.transformer.wte.weight

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(0, input_ids.size(1), dtype=torch.long, device=input_ids.device)
        x = self.transformer.wte(input_ids) + self.transformer.wpe(pos)
        for block in self.transformer.h:
            x = block(x)
        return self.lm_head(self.transformer.ln_f(x))


def build_nanogpt(preset: GPTPreset, seed: int = 0) -> NanoGPT:
    """A NanoGPT with reproducible random weights: N(0, 0.02) matrices, 1-D parameters jittered off 0/1."""
    with torch.random.fork_rng(devices=[]):  # seed our own draws, leave the caller's RNG as it was
        torch.manual_seed(seed)
        model = NanoGPT(preset).eval()
        with torch.no_grad():
            for param in model.parameters():
                if param.dim() == 1:  # exact 0/1 would let exporters drop or merge them
                    param.add_(torch.randn(param.shape) * INIT_STD)
                else:
                    param.normal_(0.0, INIT_STD)
    return model


def export_nanogpt(
    out_path: str | os.PathLike[str],
    preset: GPTPreset | str,
    *,
    opset: int = 14,
    exporter: str = "torchscript",
    seq_len: int | None = None,
    seed: int = 0,
) -> Path:
    """Export a randomly initialised NanoGPT of `preset`'s shape; `seq_len` (default min(128, n_ctx)) only
    shapes the tracing example, the graph stays dynamic in batch and seq."""
    p = get_preset(preset) if isinstance(preset, str) else preset
    opset = check_exporter(exporter, opset)
    seq = min(128, p.n_ctx) if seq_len is None else seq_len
    if not 1 <= seq <= p.n_ctx:
        raise ExportError(f"seq_len must be in 1..{p.n_ctx} (the model's context), got {seq}")
    out = Path(out_path)
    if not (out.parent if str(out.parent) else Path(".")).is_dir():
        raise ExportError(f"output directory '{out.parent}' does not exist", where=str(out))
    model = build_nanogpt(p, seed)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as staging:
        onnx_model = trace_to_onnx(
            model,
            exporter=exporter,
            opset=opset,
            example_shape=(1, seq),
            max_seq=p.n_ctx,
            staging_dir=Path(staging),
        )
        metadata = {
            "cgpt.source": f"nanogpt-{p.name}",
            "cgpt.exporter": exporter,
            "cgpt.weights": f"random seed={seed}",
        }
        return write_onnx(onnx_model, out, metadata=metadata)
