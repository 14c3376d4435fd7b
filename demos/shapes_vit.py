"""shapes-vit: a ViTForImageClassification (64x64, patch 8) naming the one target shape in a cluttered image.

Metrics: accuracy on fresh images, and the rollout pointing game — the argmax over patches of the
CLS row of attention rollout lies inside the target's bounding box grown by one patch.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

from analysis import attention_rollout, rollout_cls_to_patches

from demos import _attn, _train
from demos.shapes import PATCH, SHAPES, SIZE, bbox_patches, shape_batch

NAME = "shapes-vit"
TARGETS = {"accuracy": 0.95, "pointing_game": 0.85}
TRAINING = ("ViT (hidden 64, 4 layers, 4 heads), AdamW lr 1.5e-3 warmup-cosine, batch 64 from a pool of 30,000 "
            "generated images with random left-right flips, 3,500 steps, then 600 steps at lr 3e-4 on a fresh pool of "
            "10,000; loss = CLS CE + 0.5 x token-labelling CE on the patches (shape class or background; the patch "
            "head is not saved)")
MEAN = STD = [0.5, 0.5, 0.5]


def encoder_config(**extra) -> ViTConfig:
    """The ViT shared by shapes-vit and the captioner's encoder: hidden 64, 4 layers, 4 heads, MLP 128."""
    return ViTConfig(
        image_size=SIZE, patch_size=PATCH, num_channels=3, hidden_size=64, num_hidden_layers=4,
        num_attention_heads=4, intermediate_size=128, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, **extra,
    )


def build_model() -> ViTForImageClassification:
    return ViTForImageClassification(encoder_config(
        num_labels=len(SHAPES), id2label=dict(enumerate(SHAPES)), label2id={s: i for i, s in enumerate(SHAPES)},
    ))


def build_processor() -> ViTImageProcessor:
    return ViTImageProcessor(do_resize=True, size={"height": SIZE, "width": SIZE}, do_normalize=True,
                             image_mean=MEAN, image_std=STD, do_rescale=True)


def to_pixels(images: list[np.ndarray]) -> torch.Tensor:
    """uint8 images [H, W, 3] -> pixel_values [batch, 3, H, W], normalised as the saved processor does."""
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0  # [batch, 3, H, W]
    return (x - 0.5) / 0.5


BACKGROUND = len(SHAPES)  # token label of patches off the shape


def token_labels(mask: np.ndarray, label: int) -> np.ndarray:
    """Per-patch labels [patches] (row-major): `label` where >= 20% of the patch is shape, else BACKGROUND."""
    g = SIZE // PATCH
    frac = mask.reshape(g, PATCH, g, PATCH).mean(axis=(1, 3)).reshape(-1)  # [patches]
    return np.where(frac >= 0.2, label, BACKGROUND)


def _batches(rng: np.random.Generator, n: int, pool: int):
    """Minibatches from a pool of `pool` generated images, each shown mirrored left-right at random."""
    ex = shape_batch(rng, pool)
    images = np.stack([e.image for e in ex])  # [pool, H, W, 3]
    masks = np.stack([e.mask for e in ex])  # [pool, H, W]
    labels = np.array([e.label for e in ex])
    while True:
        idx = rng.integers(pool, size=n)
        x, m = images[idx], masks[idx]
        flip = rng.random(n) < 0.5
        x[flip], m[flip] = x[flip, :, ::-1], m[flip, :, ::-1]
        tokens = np.stack([token_labels(mi, li) for mi, li in zip(m, labels[idx])])  # [batch, patches]
        yield {"pixel_values": to_pixels(list(x)), "labels": torch.from_numpy(labels[idx]),
               "token_labels": torch.from_numpy(tokens)}


class _TokenLabelling(torch.nn.Module):
    """Training wrapper: CLS cross-entropy + 0.5 x per-patch cross-entropy on token labels (shape class or
    background), as in token labelling (Jiang et al. 2021). Only `vit` is saved; the patch head is dropped."""

    def __init__(self, vit: ViTForImageClassification):
        super().__init__()
        self.vit = vit
        self.patch_head = torch.nn.Linear(vit.config.hidden_size, len(SHAPES) + 1)

    def forward(self, pixel_values, labels, token_labels):
        h = self.vit.vit(pixel_values).last_hidden_state  # [batch, 1 + patches, hidden]
        cls_loss = F.cross_entropy(self.vit.classifier(h[:, 0]), labels)
        patch_logits = self.patch_head(h[:, 1:])  # [batch, patches, classes + 1]
        return cls_loss + 0.5 * F.cross_entropy(patch_logits.flatten(0, 1), token_labels.flatten())


def evaluate(model, *, n: int, seed: int, batch: int = 200) -> dict:
    """Accuracy and rollout pointing game on `n` fresh images drawn with `seed`."""
    rng = np.random.default_rng(seed)
    grid = SIZE // PATCH
    correct = hits = 0
    for start in range(0, n, batch):
        ex = shape_batch(rng, min(batch, n - start))
        out, maps = _attn.capture(model, pixel_values=to_pixels([e.image for e in ex]))
        correct += int((out.logits.argmax(-1) == torch.tensor([e.label for e in ex])).sum())
        cls = rollout_cls_to_patches(attention_rollout(maps[(None, "self")]), grid=(grid, grid))  # [batch, h, w]
        peak = cls.flatten(1).argmax(-1).numpy()  # [batch] index into the row-major patch grid
        for e, p in zip(ex, peak):
            hits += bool(bbox_patches(e.mask, margin=1)[p // grid, p % grid])
    return {"accuracy": correct / n, "pointing_game": hits / n, "n_images": n, "seed": seed}


def train(out: Path, *, steps: int = 3500, seed: int = 0, pool: int = 30_000) -> tuple[float, float]:
    """Phase 1: `steps` steps from scratch on a pool of `pool` images; phase 2: `finetune`."""
    rng = _train.setup(seed)
    model = build_model()
    wrapper = _TokenLabelling(model)
    val = lambda: "val " + str({k: round(v, 3) for k, v in evaluate(model, n=400, seed=10_001).items() if k in TARGETS})
    wall, cpu = _train.train_loop(
        wrapper, _batches(rng, 64, pool), lambda m, b: m(**b), steps=steps, lr=1.5e-3, warmup=150,
        weight_decay=0.05, log_every=250, evaluate=val,
    )
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    build_processor().save_pretrained(out)
    wall2, cpu2 = finetune(out, seed=seed)
    return wall + wall2, cpu + cpu2


def finetune(out: Path, *, seed: int = 0, steps: int = 600, pool: int = 10_000) -> tuple[float, float]:
    """Phase 2 on the weights in `out`: `steps` steps at lr 3e-4 on a fresh pool drawn with seed + 1
    (its randomness does not depend on phase 1). Saves back into `out`."""
    rng = np.random.default_rng(seed + 1)
    torch.manual_seed(seed + 1)
    model = ViTForImageClassification.from_pretrained(out)
    wrapper = _TokenLabelling(model)
    val = lambda: "val " + str({k: round(v, 3) for k, v in evaluate(model, n=400, seed=10_001).items() if k in TARGETS})
    secs = _train.train_loop(wrapper, _batches(rng, 64, pool), lambda m, b: m(**b), steps=steps, lr=3e-4, warmup=50,
                             weight_decay=0.05, log_every=200, evaluate=val)
    model.save_pretrained(out)
    return secs


def load(folder: Path):
    return ViTForImageClassification.from_pretrained(folder, attn_implementation="eager").eval()
