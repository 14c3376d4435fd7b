"""Data generators of the demo models: seeded, and their ground truth consistent with the data."""
from __future__ import annotations

import numpy as np
import pytest

from demos import negation, recall_lm
from demos.shapes import (COLOURS, PATCH, RELATIONS, SHAPES, SIZE, bbox_patches, make_caption_image,
                          make_shape_image, patch_mask, shape_mask)


def test_shape_masks_are_distinct_filled_shapes():
    masks = {k: shape_mask(k, 32.0, 32.0, 10.0) for k in SHAPES}
    for k, m in masks.items():
        assert m.shape == (SIZE, SIZE) and m[32, 32], k  # centre pixel is inside every shape
        assert 60 < m.sum() < 500, (k, m.sum())
    for a in SHAPES:
        for b in SHAPES:
            if a < b:
                assert (masks[a] ^ masks[b]).sum() > 20, (a, b)
    with pytest.raises(ValueError, match="unknown shape"):
        shape_mask("hexagon", 1, 1, 1)


def test_shape_images_are_seeded_and_the_mask_is_the_shape():
    a, b = make_shape_image(np.random.default_rng(3)), make_shape_image(np.random.default_rng(3))
    assert np.array_equal(a.image, b.image) and a.label == b.label and np.array_equal(a.mask, b.mask)
    rng = np.random.default_rng(4)
    for _ in range(20):
        ex = make_shape_image(rng)
        assert ex.image.shape == (SIZE, SIZE, 3) and ex.image.dtype == np.uint8 and 0 <= ex.label < len(SHAPES)
        inside = ex.image[ex.mask].astype(int)
        assert (inside == inside[0]).all()  # one flat colour inside the mask
        x0, y0, x1, y1 = ex.bbox
        assert ex.mask[y0 : y1 + 1, x0 : x1 + 1].sum() == ex.mask.sum()


def test_caption_images_name_objects_in_order():
    rng = np.random.default_rng(5)
    for _ in range(30):
        ex = make_caption_image(rng)
        words = ex.caption.split()
        rel = " ".join(words[2:-2])
        assert rel in RELATIONS and words[0] in COLOURS and words[1] in SHAPES
        assert (words[0], words[1]) == ex.objects[0] and (words[-2], words[-1]) == ex.objects[1]
        assert not (ex.masks[0] & ex.masks[1]).any()
        (y0, x0), (y1, x1) = (np.argwhere(m).mean(0) for m in ex.masks)
        assert (x0 < x1) if rel == "left of" else (y0 < y1)
        for (colour, _), m in zip(ex.objects, ex.masks):
            assert np.abs(ex.image[m].mean(0) - COLOURS[colour]).max() <= 20.5


def test_patch_helpers_on_a_hand_made_mask():
    m = np.zeros((SIZE, SIZE), dtype=bool)
    m[9:12, 17:20] = True  # rows 9-11 -> patch row 1; cols 17-19 -> patch col 2
    pm = patch_mask(m)
    assert pm.shape == (SIZE // PATCH,) * 2 and pm.sum() == 1 and pm[1, 2]
    bb = bbox_patches(m, margin=1)
    assert bb.sum() == 9 and bb[0:3, 1:4].all()
    assert patch_mask(m, margin=1).sum() == 9


@pytest.mark.parametrize("n_questions", [1, 2])
def test_recall_examples_copy_from_the_queried_fact(n_questions):
    rng = np.random.default_rng(6)
    for _ in range(50):
        ex = recall_lm.make_example(rng, n_questions=n_questions)
        w = ex.words
        assert len(ex.copies) == 2 * n_questions and w.count("what") == n_questions
        for q in range(n_questions):
            (a0, s0), (a1, s1) = ex.copies[2 * q : 2 * q + 2]
            asked = w[a0 - 1]  # "what does NAME have ? NAME COLOUR OBJECT ."
            assert w[a0 - 6 : a0 - 1] == ["what", "does", asked, "have", "?"]
            assert w[a0] == w[s0] and w[a1] == w[s1] and a1 == a0 + 1 and s1 == s0 + 1
            assert w[s0 - 1] == asked and (s0 - 1) % 4 == 0  # the fact "NAME COLOUR OBJECT ." of the owner
        assert (ex.answer, ex.source) == ((ex.copies[0][0], ex.copies[1][0]), (ex.copies[0][1], ex.copies[1][1]))


def test_recall_tokenizer_words_are_single_tokens_and_any_text_round_trips():
    tok = recall_lm.train_tokenizer(0)
    vocab = recall_lm.word_ids(tok)
    ex = recall_lm.make_example(np.random.default_rng(7))
    ids, _ = recall_lm.encode([ex], vocab, tok.eos_token_id)
    assert ids[0].tolist() == tok(ex.text)["input_ids"]
    text = "Ünïcode 🙂 中文 — fine"
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) .strip() == text


def _independent_label(sentence: str) -> int:
    words = sentence.replace("n't", " not").split()
    positive = any(w in negation.POSITIVE or w in negation.LIKE for w in words)
    negated = any(w in ("not", "never") for w in words)
    return int(positive != negated)


def test_negation_labels_follow_polarity_xor_negation():
    rng = np.random.default_rng(8)
    pairs = [negation.make_sentence(rng) for _ in range(300)]
    assert {label for _, label in pairs} == {0, 1}
    for sentence, label in pairs:
        assert label == _independent_label(sentence), sentence
    tok = negation.build_tokenizer()
    ids = tok("The soup wasn't good!")["input_ids"]
    assert ids[0] == tok.cls_token_id and tok.unk_token_id not in ids
