"""shapes-captioner: VisionEncoderDecoderModel (ViT encoder + 2-layer GPT-2 decoder with cross-attention)
captioning two-shape images, e.g. "red circle left of blue square".

Metrics: exact-caption accuracy of greedy `generate()`, and cross-attention grounding — for each colour
and shape word of the reference caption, the head-mean cross-attention of the decoder position that
predicts it (teacher forcing), argmax over the 64 patches (CLS excluded), falls on a patch touched by the
mask of the object the word describes; reported per decoder layer and for the best layer.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (GPT2Config, PreTrainedTokenizerFast, VisionEncoderDecoderConfig,
                          VisionEncoderDecoderModel)

from demos import _attn, _train
from demos.shapes import COLOURS, PATCH, RELATIONS, SHAPES, SIZE, make_caption_image, patch_mask
from demos import shapes_vit
from demos.shapes_vit import build_processor, encoder_config, to_pixels

NAME = "shapes-captioner"
TARGETS = {"caption_accuracy": 0.90, "grounding_best_layer": 0.80}
TRAINING = ("encoder initialised from shapes-vit, 2-layer GPT-2 decoder (n_embd 64) with cross-attention; "
            "AdamW lr 1.5e-3 warmup-cosine, 1,500 steps of 64 fresh images; loss = caption CE (teacher forcing) + "
            "0.5 x cross-attention supervision of the last decoder layer (head mean) on the described object's patches")
SPECIAL = ("[PAD]", "[BOS]", "[EOS]", "[UNK]")
MAX_LEN = 12


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Word-level tokenizer over the caption words; specials [PAD] [BOS] (decoder start) [EOS] [UNK]."""
    words = [*COLOURS, *SHAPES, *dict.fromkeys(w for r in RELATIONS for w in r.split())]
    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate([*SPECIAL, *words])}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", bos_token="[BOS]", eos_token="[EOS]",
                                   unk_token="[UNK]", model_max_length=MAX_LEN)


def build_model(tokenizer) -> VisionEncoderDecoderModel:
    enc = encoder_config()
    dec = GPT2Config(vocab_size=len(tokenizer), n_positions=MAX_LEN + 4, n_embd=64, n_layer=2, n_head=4, n_inner=128,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, add_cross_attention=True, is_decoder=True,
                     bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                     pad_token_id=tokenizer.pad_token_id)
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(enc, dec)
    config.decoder_start_token_id = tokenizer.bos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    config.eos_token_id = tokenizer.eos_token_id
    model = VisionEncoderDecoderModel(config=config)
    gc = model.generation_config
    gc.decoder_start_token_id, gc.bos_token_id = tokenizer.bos_token_id, tokenizer.bos_token_id
    gc.eos_token_id, gc.pad_token_id, gc.max_length, gc.do_sample = tokenizer.eos_token_id, tokenizer.pad_token_id, MAX_LEN, False
    return model


def _labels(tokenizer, captions: list[str]) -> torch.Tensor:
    """Caption ids + [EOS], right-padded with -100: [batch, T]."""
    ids = [tokenizer(c, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for c in captions]
    T = max(map(len, ids))
    return torch.tensor([x + [-100] * (T - len(x)) for x in ids])


def _word_targets(e) -> list[tuple[int, int]]:
    """(object index, decoder query position predicting the word) for the colour and shape words of
    both objects: with decoder input [BOS] + caption, caption word t is predicted at position t."""
    n_words = len(e.caption.split())
    return [(0, 0), (0, 1), (1, n_words - 2), (1, n_words - 1)]


def _batches(rng, tokenizer, n):
    while True:
        ex = [make_caption_image(rng) for _ in range(n)]
        targets = [_word_targets(e) for e in ex]
        keys = np.zeros((n, 4, 1 + (SIZE // PATCH) ** 2), dtype=np.float32)  # [batch, words, CLS + patches]
        for i, (e, t) in enumerate(zip(ex, targets)):
            for w, (obj, _) in enumerate(t):
                keys[i, w, 1:] = patch_mask(e.masks[obj]).reshape(-1)
        yield {"pixel_values": to_pixels([e.image for e in ex]), "labels": _labels(tokenizer, [e.caption for e in ex]),
               "word_pos": torch.tensor([[q for _, q in t] for t in targets]), "object_keys": torch.from_numpy(keys)}


def _loss(model, batch) -> torch.Tensor:
    """Caption CE + 0.5 x cross-attention supervision: -ln(mass of the last decoder layer's head-mean
    cross-attention on the described object's patches) for each colour and shape word (after
    Strubell et al. 2018's attention supervision; the masks are the generator's ground truth)."""
    out = model(pixel_values=batch["pixel_values"], labels=batch["labels"], output_attentions=True)
    att = out.cross_attentions[-1].mean(1)  # [batch, q, 1 + patches], head mean
    rows = torch.arange(att.shape[0])[:, None]
    mass = (att[rows, batch["word_pos"]] * batch["object_keys"]).sum(-1)  # [batch, words]
    return out.loss + 0.5 * -torch.log(mass + 1e-6).mean()


def evaluate(model, tokenizer, *, n: int, seed: int, batch: int = 250) -> dict:
    rng = np.random.default_rng(seed)
    grid = SIZE // PATCH
    exact, hits, words = 0, None, 0
    for start in range(0, n, batch):
        ex = [make_caption_image(rng) for _ in range(min(batch, n - start))]
        pixels = to_pixels([e.image for e in ex])
        with torch.no_grad():
            gen = model.generate(pixel_values=pixels, max_length=MAX_LEN)
        texts = tokenizer.batch_decode(gen, skip_special_tokens=True)
        exact += sum(t.strip() == e.caption for t, e in zip(texts, ex))
        labels = _labels(tokenizer, [e.caption for e in ex])  # [batch, T]
        dec_in = torch.cat([torch.full((len(ex), 1), tokenizer.bos_token_id), labels[:, :-1]], 1)
        dec_in[dec_in == -100] = tokenizer.pad_token_id
        _, maps = _attn.capture(model, pixel_values=pixels, decoder_input_ids=dec_in)
        cross = torch.stack(maps[("decoder", "cross")], 1).mean(2)[..., 1:]  # [batch, layers, q, patches], head mean
        for i, e in enumerate(ex):
            for obj, pos in _word_targets(e):
                ok = patch_mask(e.masks[obj]).reshape(-1)[cross[i, :, pos].argmax(-1).numpy()]  # [layers]
                hits = ok.astype(float) if hits is None else hits + ok
                words += 1
    per_layer = (hits / words).tolist()
    return {"caption_accuracy": exact / n, "grounding_best_layer": max(per_layer),
            "grounding_per_layer": per_layer, "best_layer": int(np.argmax(per_layer)), "n_images": n, "seed": seed}


def train(out: Path, *, steps: int = 1500, seed: int = 0) -> tuple[float, float]:
    rng = _train.setup(seed)
    tokenizer = build_tokenizer()
    model = build_model(tokenizer)
    vit_dir = _train.MODELS_DIR / shapes_vit.NAME
    if (vit_dir / "model.safetensors").is_file():  # start from shapes-vit's encoder: it already sees shapes
        missing, _ = model.encoder.load_state_dict(shapes_vit.load(vit_dir).vit.state_dict(), strict=False)
        if any(not k.startswith("pooler.") for k in missing):
            raise RuntimeError(f"shapes-vit encoder does not match the captioner's: missing {missing}")
        print(f"encoder initialised from {vit_dir}", flush=True)
    val = lambda: str({k: v for k, v in evaluate(model, tokenizer, n=100, seed=10_001).items() if k in TARGETS})
    model.set_attn_implementation("eager")  # the loss reads the cross-attention probabilities
    secs = _train.train_loop(model, _batches(rng, tokenizer, 64), _loss, steps=steps, lr=1.5e-3,
                             warmup=200, weight_decay=0.05, log_every=250, evaluate=val)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    build_processor().save_pretrained(out)
    return secs


def load(folder: Path):
    from transformers import AutoTokenizer

    model = VisionEncoderDecoderModel.from_pretrained(folder, attn_implementation="eager").eval()
    return model, AutoTokenizer.from_pretrained(folder)
