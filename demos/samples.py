"""Regenerate sample_inputs/{images,texts}/ and sample_inputs/manifest.json: `python -m demos.samples`.

Images are 64x64 PNGs drawn by demos.shapes with their ground-truth masks (PNG, 255 = object);
texts cover each text model's own language, off-distribution English, a long document, and
emoji / non-Latin scripts.
"""
from __future__ import annotations

import json
import sys

import numpy as np
from PIL import Image

from demos import _train, negation, recall_lm
from demos.shapes import SHAPES, make_caption_image, make_shape_image

SAMPLES_DIR = _train.REPO / "sample_inputs"
SEED = 7

ENGLISH = (
    "The old lighthouse keeper climbed the stairs every evening, counting each step as his father had done. "
    "From the top he could see the harbour lights, the fishing boats returning, and the clouds that "
    "promised rain before morning. He wrote the weather in a small notebook, the same way every day."
)
EMOJI_MULTILINGUAL = (
    "Attention maps 🔍 should handle every script: 注意力机制很重要。 "
    "Внимание — это не объяснение. الانتباه ليس تفسيرا. ध्यान महत्वपूर्ण है। "
    "日本語のテキストも大丈夫です 🎌 and emoji sequences like 👩‍💻🧑🏽‍🚀 or flags 🇫🇷🇯🇵."
)
LONG_PARAGRAPHS = (
    "Attention weights are easy to draw and hard to read. A heatmap shows, for one layer and one head, how much "
    "each query position mixes in from each key position, and because the numbers sum to one along every row "
    "they look like a budget that the model spends. That reading is tempting and often wrong.",
    "First, the values that attention mixes are not the tokens themselves but vectors that earlier layers have "
    "already blended. By the third or fourth layer a position may carry information from the whole sentence, so "
    "a strong weight on the word 'the' can move facts that came from somewhere else entirely.",
    "Second, many heads park most of their weight on the first token, a separator or a punctuation mark. These "
    "sinks act like a no-operation: when a head has nothing useful to do, it attends to a position whose value "
    "vector is small. A bright column on the first token is therefore a statement about the mechanism, not about "
    "meaning.",
    "Third, patterns change with the input. A head that tracks the previous token on one sentence may spread its "
    "weight broadly on another, and a head that seems to resolve a pronoun on a textbook example may ignore the "
    "pronoun in a longer paragraph. Summaries across many inputs are more honest than a single picture.",
    "Rollout tries to follow information through the stack by multiplying the attention matrices of consecutive "
    "layers, adding the identity to stand for the residual connection. It produces smoother maps, and it is "
    "cheap, but it still ignores the values and the feed-forward blocks. Gradient-weighted variants bring in the "
    "output the user cares about, which often helps and sometimes does not.",
    "The only way to know whether a map agrees with what the model actually uses is to test it. Remove a token or "
    "cover a patch, run the model again, and see how much the prediction drops. When the positions that matter "
    "for the prediction are the same ones that the map highlights, the map earns some trust for that input. When "
    "they are not, the picture is still a faithful record of the weights, just not an explanation.",
    "Synthetic tasks make this concrete. In a language where every answer copies a word from an earlier fact, we "
    "know exactly where the information must come from, so we can check whether some head looks there. In an "
    "image with one shape on a cluttered background, we know which pixels hold the answer. These small models are "
    "not meant to be impressive; they are meant to be checkable.",
)


def _long_document(min_tokens: int = 2000) -> str:
    """The paragraphs, each followed by a recall-style fact list, repeated until >= min_tokens tokens
    of recall-lm's tokenizer (counted with the tokenizer when its folder exists, else ~1 token per 2 chars)."""
    rng = np.random.default_rng(SEED)
    tok_dir = _train.MODELS_DIR / recall_lm.NAME
    if (tok_dir / "tokenizer.json").is_file():
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(tok_dir)
        count = lambda t: len(tok(t)["input_ids"])
    else:
        count = lambda t: len(t) // 2
    parts: list[str] = []
    i = 0
    while True:
        parts.append(LONG_PARAGRAPHS[i % len(LONG_PARAGRAPHS)])
        parts.append(recall_lm.make_example(rng, 4).text)
        i += 1
        text = "\n\n".join(parts)
        if i >= len(LONG_PARAGRAPHS) and count(text) >= min_tokens:
            return text + "\n"


def build() -> dict:
    rng = np.random.default_rng(SEED)
    (SAMPLES_DIR / "images").mkdir(parents=True, exist_ok=True)
    (SAMPLES_DIR / "texts").mkdir(parents=True, exist_ok=True)
    entries = []

    def image(sample_id, title, desc, img, mask, models):
        Image.fromarray(img).save(SAMPLES_DIR / "images" / f"{sample_id}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(SAMPLES_DIR / "images" / f"{sample_id}.mask.png")
        entries.append({"id": sample_id, "title": title, "description": desc, "modality": "image",
                        "file": f"images/{sample_id}.png", "mask": f"images/{sample_id}.mask.png", "models": models})

    def text(sample_id, title, desc, body, models):
        (SAMPLES_DIR / "texts" / f"{sample_id}.txt").write_text(body, encoding="utf-8")
        entries.append({"id": sample_id, "title": title, "description": desc, "modality": "text",
                        "file": f"texts/{sample_id}.txt", "models": models})

    seen: set[int] = set()
    while len(seen) < 4:  # one image per shape class, first four classes met
        ex = make_shape_image(rng)
        if ex.label in seen:
            continue
        seen.add(ex.label)
        k = len(seen)
        image(f"shapes-vit-{k}", f"Cluttered {SHAPES[ex.label]}",
              f"One {SHAPES[ex.label]} among distractor blobs; the mask marks the shape's pixels.",
              ex.image, ex.mask, ["shapes-vit"])
    for k in range(1, 4):
        ex = make_caption_image(rng)
        image(f"shapes-captioner-{k}", f"'{ex.caption}'",
              f"Two shapes; reference caption '{ex.caption}'. The mask marks both objects' pixels.",
              ex.image, ex.masks[0] | ex.masks[1], ["shapes-captioner"])

    text("recall-facts", "Who has what? (in-distribution)",
         "Facts then a question: the answer words copy words of the queried fact.",
         recall_lm.make_example(rng, 3).text, ["recall-lm"])
    four = recall_lm.make_example(rng, 4)
    text("recall-facts-4", "Four facts (in-distribution)", "Four facts, question and answer.", four.text, ["recall-lm"])
    prompt = " ".join(four.words[: four.answer[0] - 1])  # up to and including "?"
    text("recall-question", "Question without its answer (for generation)",
         "Generate 4 tokens: the model should answer with the owner, colour and object of the queried fact.",
         prompt, ["recall-lm"])
    for k, (sentence, label) in enumerate(
        [("the soup was not good", 0), ("honestly , the movie was never boring !", 1), ("i didn't enjoy the concert .", 0)], 1
    ):
        text(f"negation-{k}", f"'{sentence}'", f"Sentiment with negation; expected label: "
             f"{'positive' if label else 'negative'}.", sentence, ["negation-classifier"])
    text("english", "Plain English (off-distribution)",
         "Ordinary prose none of the demo models was trained on: attention here shows generic patterns.", ENGLISH, [])
    text("long-document", "Long document (>= 2,000 tokens)",
         "Essay paragraphs interleaved with fact lists; longer than recall-lm's 256 positions, so it exercises "
         "truncation and long-input rendering.", _long_document(), [])
    text("emoji-multilingual", "Emoji and non-Latin scripts",
         "Chinese, Cyrillic, Arabic, Devanagari, Japanese and emoji with joiners: every byte-level tokenizer must "
         "cope.", EMOJI_MULTILINGUAL, [])
    manifest = {"version": 1, "generated_by": "python -m demos.samples", "seed": SEED, "samples": entries}
    (SAMPLES_DIR / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest


if __name__ == "__main__":
    m = build()
    print(f"wrote {len(m['samples'])} samples to {SAMPLES_DIR}", file=sys.stderr)
