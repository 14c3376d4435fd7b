"""position_labels: token text with specials marked; image CLS / extra tokens / patch row,col."""
from __future__ import annotations

import pytest
import torch

from hooks import ModelBundle, PositionLabel, image_labels, position_labels
from tests import tiny_models as tm


def test_bert_tokens_with_specials_and_padding():
    tok = tm.tiny_tokenizer()
    enc = tok(["the cat sat", "a dog"], return_tensors="pt", padding=True)
    labels = position_labels(tok, enc["input_ids"], batch_index=1)
    assert [(l.text, l.is_special) for l in labels] == [
        ("[CLS]", True), ("a", False), ("dog", False), ("[SEP]", True), ("[PAD]", True)]
    assert [l.index for l in labels] == list(range(5)) and {l.kind for l in labels} == {"token"}


def test_bundle_and_plain_list_of_ids_give_the_same_labels():
    tok = tm.tiny_tokenizer()
    bundle = ModelBundle(model=tm.tiny_bert(), model_id="tiny", tokenizer=tok)
    ids = tok("the quick fox")["input_ids"]
    assert position_labels(bundle, ids) == position_labels(tok, torch.tensor(ids))


def test_byte_level_bpe_pieces_are_readable():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator([" ".join(tm.WORDS)] * 5, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|endoftext|>")
    ids = tok("the cat<|endoftext|>")["input_ids"]
    labels = position_labels(tok, ids)
    assert any("Ġ" in p for p in tok.convert_ids_to_tokens(ids))  # raw pieces are byte-level
    assert not any("Ġ" in l.text for l in labels)
    assert "".join(l.text for l in labels[:-1]).replace("␣", " ") == "the cat"  # whitespace-only -> ␣
    assert labels[-1].is_special and labels[-1].text == "<|endoftext|>"


def test_no_tokenizer_falls_back_to_ids():
    labels = position_labels(None, [4, 9])
    assert [(l.text, l.is_special) for l in labels] == [("4", False), ("9", False)]


def test_vit_cls_and_patch_grid():
    bundle = ModelBundle(model=tm.tiny_vit(), model_id="vit", modality="image")
    labels = position_labels(bundle, n_positions=17)  # CLS + 4x4 patches
    assert labels[0] == PositionLabel(0, "CLS", True, "cls")
    assert labels[1] == PositionLabel(1, "patch 0,0", False, "patch", 0, 0)
    assert labels[16] == PositionLabel(16, "patch 3,3", False, "patch", 3, 3)
    assert labels[6].text == "patch 1,1" and (labels[6].row, labels[6].col) == (1, 1)


def test_explicit_grid_for_images_at_another_size():
    bundle = ModelBundle(model=tm.tiny_vit(), model_id="vit", modality="image")
    labels = position_labels(bundle, n_positions=1 + 2 * 6, grid=(2, 6))  # a 16x48 image, patch 8
    assert labels[0].kind == "cls" and labels[-1].text == "patch 1,5" and (labels[7].row, labels[7].col) == (1, 0)


def test_images_without_cls_and_with_extra_tokens():
    no_cls = image_labels(4, grid=(2, 2))
    assert [l.text for l in no_cls] == ["patch 0,0", "patch 0,1", "patch 1,0", "patch 1,1"]
    deit = image_labels(6, grid=(2, 2))  # CLS + distillation token + 4 patches
    assert [(l.text, l.kind) for l in deit[:3]] == [("CLS", "cls"), ("extra 1", "extra"), ("patch 0,0", "patch")]
    with pytest.raises(ValueError, match="fewer than the 2x2 patch grid"):
        image_labels(3, grid=(2, 2))


def test_two_modality_models_pick_labels_by_stack():
    tok = tm.tiny_tokenizer(template=None)
    ved = ModelBundle(model=tm.tiny_vision_encoder_decoder(), model_id="ved", tokenizer=tok, modality="image-to-text")
    assert position_labels(ved, n_positions=17, stack="encoder")[5].kind == "patch"
    assert [l.text for l in position_labels(ved, [5, 10], stack="decoder")] == ["<s>", "cat"]
    clip = ModelBundle(model=tm.tiny_clip(), model_id="clip", tokenizer=tok, modality="image-text")
    assert position_labels(clip, n_positions=17, stack="vision")[0].text == "CLS"
    assert position_labels(clip, [10], stack="text")[0].text == "cat"


def test_missing_arguments_are_clear():
    bundle = ModelBundle(model=tm.tiny_vit(), model_id="vit", modality="image")
    with pytest.raises(ValueError, match="need n_positions"):
        position_labels(bundle)
    with pytest.raises(ValueError, match="need input_ids"):
        position_labels(tm.tiny_tokenizer())
