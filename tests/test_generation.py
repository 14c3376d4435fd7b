"""Capture during model.generate() with the KV cache; `stitched()` equals one full eager forward.

generate(max_new_tokens=n) runs the model n times (prefill + n-1 cached steps): the last new token
is emitted but never fed back, so stitched maps cover T = len(final sequence) - 1 positions.
"""
from __future__ import annotations

import copy

import pytest
import torch

from hooks import CaptureError, capture_attention
from hooks._stitch import stitch
from hooks._types import AttentionMap
from tests import tiny_models as tm

NEW = 5


def eager(model):
    ref = copy.deepcopy(model)
    ref.set_attn_implementation("eager")
    return ref


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
@pytest.mark.parametrize("use_cache", [True, False])
def test_stitched_equals_full_forward(arch, use_cache):
    model = getattr(tm, f"tiny_{arch}")()
    ids = torch.tensor([[7, 8, 9, 10], [11, 12, 13, 14]])
    with torch.no_grad(), capture_attention(model) as cap:
        seq = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW,
                             min_new_tokens=NEW, do_sample=False, use_cache=use_cache)
    assert seq.shape == (2, 4 + NEW)
    assert len(cap.maps) == 2 * NEW  # one map per layer per forward call
    if use_cache:
        assert cap.maps[2].weights.shape == (2, 4, 1, 5) and cap.maps[2].step == 1  # first cached step
    stitched = cap.stitched()
    T = seq.shape[1] - 1
    with torch.no_grad():
        ref = eager(model)(input_ids=seq[:, :T], output_attentions=True).attentions
    assert [s.layer for s in stitched] == [0, 1]
    for s, r in zip(stitched, ref):
        assert s.weights.shape == (2, 4, T, T)
        torch.testing.assert_close(s.weights, r, atol=1e-5, rtol=0)
        assert torch.triu(s.weights, diagonal=1).abs().max() == 0  # zeros above the diagonal


def test_left_padded_batch_generation_llama():
    model = tm.tiny_llama()
    ids = torch.tensor([[0, 0, 7, 8], [11, 12, 13, 14]])
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    with torch.no_grad(), capture_attention(model) as cap:
        seq = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=3, min_new_tokens=3,
                             do_sample=False)
    T = seq.shape[1] - 1
    full_mask = torch.cat([mask, torch.ones(2, T - 4, dtype=mask.dtype)], dim=1)
    with torch.no_grad():
        ref = eager(model)(input_ids=seq[:, :T], attention_mask=full_mask, output_attentions=True).attentions
    for s, r in zip(cap.stitched(), ref):
        # rows of padding queries are not meaningful (fully masked); compare real query rows
        torch.testing.assert_close(s.weights[0, :, 2:], r[0, :, 2:], atol=1e-5, rtol=0)
        torch.testing.assert_close(s.weights[1], r[1], atol=1e-5, rtol=0)
        assert s.weights[0, :, 2:, :2].abs().max() == 0  # left padding gets no attention


@pytest.mark.parametrize("arch", ["vision_encoder_decoder", "t5", "bart"])
def test_encoder_decoder_generation_self_and_cross(arch):
    model = getattr(tm, f"tiny_{arch}")()
    if arch == "vision_encoder_decoder":
        enc_inputs = {"pixel_values": tm.pixel_inputs()}
    else:
        enc_inputs = {"input_ids": torch.tensor([[7, 8, 9, 10, 6], [11, 12, 13, 6, 0]]),
                      "attention_mask": torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])}
    with torch.no_grad(), capture_attention(model) as cap:
        seq = model.generate(**enc_inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    T = seq.shape[1] - 1  # decoder positions fed to the model (start token + 3)
    with torch.no_grad():
        ref = eager(model)(**enc_inputs, decoder_input_ids=seq[:, :T], output_attentions=True)
    stitched = {(s.stack, s.layer, s.kind): s.weights for s in cap.stitched()}
    n_enc = ref.encoder_attentions[0].shape[-1]
    for layer in range(2):
        torch.testing.assert_close(stitched[("encoder", layer, "self")], ref.encoder_attentions[layer], atol=1e-5, rtol=0)
        dec_self = stitched[("decoder", layer, "self")]
        cross = stitched[("decoder", layer, "cross")]
        assert dec_self.shape == (2, 4, T, T) and cross.shape == (2, 4, T, n_enc)
        torch.testing.assert_close(dec_self, ref.decoder_attentions[layer], atol=1e-5, rtol=0)
        torch.testing.assert_close(cross, ref.cross_attentions[layer], atol=1e-5, rtol=0)


def test_changing_batch_is_refused():
    a = AttentionMap("h.0.attn", 0, None, "self", torch.full((1, 2, 3, 3), 1 / 3))
    b = AttentionMap("h.0.attn", 0, None, "self", torch.full((2, 2, 1, 4), 1 / 4), step=1)
    with pytest.raises(CaptureError, match="num_beams=1"):
        stitch([a, b])


def test_missing_rows_are_refused():
    a = AttentionMap("h.0.attn", 0, None, "self", torch.full((1, 2, 1, 2), 1 / 2))  # row 0 never computed
    with pytest.raises(CaptureError, match="never computed"):
        stitch([a])
