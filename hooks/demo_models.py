"""The negation-classifier demo: a text classifier built from PyTorch's own `nn.TransformerEncoder`.

Shipped as sample_inputs/models/negation-classifier/{config.json, model.safetensors, tokenizer.json};
`load_negation_classifier(folder)` returns (model, tokenizer). The model shows attnscope's
`nn.MultiheadAttention` capture path end to end (fast path, padding masks, need_weights=False).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

__all__ = ["NegationClassifierConfig", "NegationClassifier", "load_negation_classifier", "save_negation_classifier"]

MODEL_TYPE = "attnscope-negation-classifier"


@dataclass
class NegationClassifierConfig:
    """Hyper-parameters; `num_hidden_layers`/`num_attention_heads`/`hidden_size` mirror HF config names."""

    vocab_size: int
    d_model: int = 64
    nhead: int = 4
    num_layers: int = 2
    dim_feedforward: int = 128
    max_len: int = 64
    pad_token_id: int = 0
    id2label: dict[int, str] = field(default_factory=lambda: {0: "negative", 1: "positive"})
    model_type: str = MODEL_TYPE

    @property
    def num_hidden_layers(self) -> int:
        return self.num_layers

    @property
    def num_attention_heads(self) -> int:
        return self.nhead

    @property
    def hidden_size(self) -> int:
        return self.d_model

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @property
    def max_position_embeddings(self) -> int:
        return self.max_len


class NegationClassifier(nn.Module):
    """Token + learned position embeddings -> nn.TransformerEncoder (batch_first, post-norm, GELU)
    -> linear head on the first token ([CLS], prepended by the tokenizer).

    forward(input_ids [batch, T], attention_mask [batch, T] of 1 = real / 0 = padding)
    -> SequenceClassifierOutput with logits [batch, num_labels].
    """

    def __init__(self, config: NegationClassifierConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model, padding_idx=config.pad_token_id)
        self.pos = nn.Embedding(config.max_len, config.d_model)
        layer = nn.TransformerEncoderLayer(config.d_model, config.nhead, config.dim_feedforward, dropout=0.0,
                                           activation="gelu", batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, config.num_layers, enable_nested_tensor=False)  # padded batches stay dense
        self.head = nn.Linear(config.d_model, config.num_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **_ignored):
        from transformers.modeling_outputs import SequenceClassifierOutput

        T = input_ids.shape[1]
        if T > self.config.max_len:
            raise ValueError(f"input has {T} tokens; negation-classifier accepts at most {self.config.max_len}")
        x = self.embed(input_ids) + self.pos(torch.arange(T, device=input_ids.device))  # [batch, T, d]
        pad = None if attention_mask is None else attention_mask == 0  # [batch, T], True = ignore
        h = self.encoder(x, src_key_padding_mask=pad)  # [batch, T, d]
        return SequenceClassifierOutput(logits=self.head(h[:, 0]))  # [batch, labels]


def save_negation_classifier(model: NegationClassifier, tokenizer, folder: str | Path) -> None:
    """Write config.json, model.safetensors and the tokenizer files into `folder`."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(asdict(model.config), indent=2) + "\n")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    tokenizer.save_pretrained(str(folder))


def load_negation_classifier(folder: str | Path):
    """(model in eval mode, PreTrainedTokenizerFast) from a folder written by `save_negation_classifier`."""
    from safetensors.torch import load_file
    from transformers import PreTrainedTokenizerFast

    folder = Path(folder)
    missing = [f for f in ("config.json", "model.safetensors", "tokenizer.json") if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} is not a negation-classifier folder: missing {', '.join(missing)}")
    raw = json.loads((folder / "config.json").read_text())
    if raw.get("model_type") != MODEL_TYPE:
        raise ValueError(f"{folder / 'config.json'} has model_type {raw.get('model_type')!r}, expected {MODEL_TYPE!r}")
    raw["id2label"] = {int(k): v for k, v in raw["id2label"].items()}
    model = NegationClassifier(NegationClassifierConfig(**raw))
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(folder))
    return model.eval(), tokenizer
