"""`attnscope demo`: capture attention from a tiny random BERT and print shapes and row sums."""
from __future__ import annotations

import torch


def main(argv: list[str] | None = None) -> int:
    from transformers import BertConfig, BertModel

    from hooks import capture_attention

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)
    model = BertModel(cfg).eval()
    input_ids = torch.randint(5, 99, (1, 7))
    with torch.no_grad(), capture_attention(model) as cap:
        model(input_ids=input_ids)
    print(f"tiny random BERT ({cfg.num_hidden_layers} layers, {cfg.num_attention_heads} heads), 7 tokens")
    for m in cap.maps:
        sums = m.weights.sum(dim=-1)  # [batch, heads, q]: each row is a distribution over keys
        print(f"layer {m.layer} {m.name}: weights {tuple(m.weights.shape)} [batch, heads, q, k], "
              f"row sums in [{sums.min():.6f}, {sums.max():.6f}]")
    return 0
