"""GPT model presets: the Cerebras-GPT family plus two tiny models for tests.

>>> get_preset("cerebras-gpt-111m").d_head
64
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cgpt.ir.diagnostics import ExportError

if TYPE_CHECKING:
    from transformers import GPT2Config


@dataclass(frozen=True)
class GPTPreset:
    """The shape of a GPT-2-architecture model (pre-LayerNorm, learned positions, tied embeddings)."""

    name: str
    n_layer: int
    d_model: int
    n_head: int
    d_ff: int
    vocab: int
    n_ctx: int

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_head

    def with_layers(self, n_layer: int) -> GPTPreset:
        """The same model truncated (or extended) to `n_layer` blocks; the name records it."""
        if n_layer < 1:
            raise ExportError(f"layers must be at least 1, got {n_layer}", where=self.name)
        if n_layer == self.n_layer:
            return self
        return GPTPreset(
            f"{self.name}-l{n_layer}", n_layer, self.d_model, self.n_head, self.d_ff, self.vocab, self.n_ctx
        )


def _cerebras(size: str, n_layer: int, d_model: int, n_head: int, d_ff: int) -> GPTPreset:
    return GPTPreset(f"cerebras-gpt-{size}", n_layer, d_model, n_head, d_ff, vocab=50257, n_ctx=2048)


PRESETS: dict[str, GPTPreset] = {
    p.name: p
    for p in (
        _cerebras("111m", 10, 768, 12, 3072),
        _cerebras("256m", 14, 1088, 17, 4352),
        _cerebras("590m", 18, 1536, 12, 6144),
        _cerebras("1.3b", 24, 2048, 16, 8192),
        # the modelzoo config files say 32 heads of 80 (one README says 20 of 128)
        _cerebras("2.7b", 32, 2560, 32, 10240),
        _cerebras("6.7b", 32, 4096, 32, 16384),
        _cerebras("13b", 40, 5120, 40, 20480),
        GPTPreset("gpt-tiny", n_layer=2, d_model=64, n_head=4, d_ff=256, vocab=512, n_ctx=128),
        GPTPreset("gpt-micro", n_layer=1, d_model=32, n_head=2, d_ff=128, vocab=128, n_ctx=64),
    )
}


def get_preset(name: str) -> GPTPreset:
    """The preset called `name`; an ExportError listing the valid names otherwise."""
    preset = PRESETS.get(name)
    if preset is None:
        raise ExportError(f"unknown model '{name}' (valid: {', '.join(PRESETS)})")
    return preset


def to_gpt2_config(preset: GPTPreset, n_layer: int | None = None) -> GPT2Config:
    """A HF GPT2Config for `preset`: exact GELU, eps 1e-5, tied embeddings, no dropout."""
    from transformers import GPT2Config  # torch/transformers are heavy: import only when exporting

    return GPT2Config(
        vocab_size=preset.vocab,
        n_positions=preset.n_ctx,
        n_embd=preset.d_model,
        n_layer=preset.n_layer if n_layer is None else n_layer,
        n_head=preset.n_head,
        n_inner=preset.d_ff,
        activation_function="gelu",
        layer_norm_epsilon=1e-5,
        tie_word_embeddings=True,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        summary_first_dropout=0.0,
        use_cache=False,
        # GPT-2's 50256 lies outside the tiny vocabularies; transformers warns unless the ids fit
        bos_token_id=min(50256, preset.vocab - 1),
        eos_token_id=min(50256, preset.vocab - 1),
    )
