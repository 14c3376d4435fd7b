"""negation-classifier: sentiment with negation ("the soup was not good" -> negative) on nn.TransformerEncoder.

Label = polarity of the sentiment word, flipped once by a negation ("not", "never", "n't", "did not").
Metric: accuracy on fresh generated sentences.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from demos import _train
from hooks.demo_models import NegationClassifier, NegationClassifierConfig, load_negation_classifier, save_negation_classifier

NAME = "negation-classifier"
TARGETS = {"accuracy": 0.95}
TRAINING = ("nn.TransformerEncoder (d_model 64, 2 layers, 4 heads), [CLS] pooling; AdamW lr 1e-3 "
            "warmup-cosine, batch 64 fresh sentences per step; loss = CE")
SUBJECTS = ("the soup", "the movie", "the service", "the hotel", "the book", "the food", "the staff", "the game",
            "the music", "the room", "this phone", "the concert", "the pizza", "the show", "the coffee", "the trip")
VERBS = ("was", "is", "seemed", "felt", "looked", "tasted", "sounded")
NEG_VERBS = ("wasn't", "isn't")
POSITIVE = ("good", "great", "excellent", "wonderful", "delicious", "fun", "lovely", "nice", "amazing", "pleasant",
            "perfect", "fantastic", "enjoyable", "superb")
NEGATIVE = ("bad", "terrible", "awful", "boring", "horrible", "bland", "poor", "dull", "disappointing", "rude",
            "ugly", "mediocre", "dreadful", "annoying")
INTENSIFIERS = ("very", "really", "quite", "so", "truly", "rather")
LIKE, DISLIKE = ("like", "love", "enjoy", "recommend"), ("hate", "dislike", "regret")
PREFIXES = ("honestly ,", "overall ,", "i think", "to be fair ,", "sadly ,", "well ,")
SPECIAL = ("[PAD]", "[UNK]", "[CLS]")


def make_sentence(rng: np.random.Generator) -> tuple[str, int]:
    """One sentence and its label (1 positive, 0 negative)."""
    pick = lambda xs: xs[rng.integers(len(xs))]
    negated = bool(rng.random() < 0.5)
    if rng.random() < 0.7:
        positive = bool(rng.random() < 0.5)
        adj = pick(POSITIVE if positive else NEGATIVE)
        inten = [pick(INTENSIFIERS)] if rng.random() < 0.4 else []
        subj = pick(SUBJECTS)
        if not negated:
            words = [subj, pick(VERBS), *inten, adj]
        elif rng.random() < 0.25:
            words = [subj, pick(NEG_VERBS), *inten, adj]
        elif rng.random() < 0.3:
            words = [subj, pick(VERBS), "not", adj, "at", "all"]
        else:
            words = [subj, pick(VERBS), pick(("not", "never")), *inten, adj]
    else:
        positive = bool(rng.random() < 0.5)
        verb = pick(LIKE if positive else DISLIKE)
        neg = [pick(("did not", "do not", "didn't", "don't"))] if negated else []
        words = ["i", *neg, verb, pick(SUBJECTS)]
    if rng.random() < 0.25:
        words = [pick(PREFIXES), *words]
    if rng.random() < 0.5:
        words.append(pick((".", "!")))
    return " ".join(words), int(positive != negated)


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Word-level tokenizer over the task's words (lower-cased, punctuation split); "[CLS]" prepended."""
    words = {w for phrase in (*SUBJECTS, *VERBS, *NEG_VERBS, *POSITIVE, *NEGATIVE, *INTENSIFIERS, *LIKE, *DISLIKE,
                              *PREFIXES, "not never at all i did do didn't don't . !")
             for w in phrase.split()}
    pre = pre_tokenizers.Whitespace()
    pieces = sorted({p for w in words for p, _ in pre.pre_tokenize_str(w)})
    vocab = {t: i for i, t in enumerate([*SPECIAL, *pieces])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A", special_tokens=[("[CLS]", vocab["[CLS]"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                                   model_max_length=64)


def _encode(tokenizer, texts: list[str]) -> dict:
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def _batches(rng, tokenizer, n):
    while True:
        pairs = [make_sentence(rng) for _ in range(n)]
        yield {**_encode(tokenizer, [p[0] for p in pairs]), "labels": torch.tensor([p[1] for p in pairs])}


def evaluate(model, tokenizer, *, n: int, seed: int, batch: int = 500) -> dict:
    rng = np.random.default_rng(seed)
    correct = 0
    for start in range(0, n, batch):
        pairs = [make_sentence(rng) for _ in range(min(batch, n - start))]
        with torch.no_grad():
            logits = model(**_encode(tokenizer, [p[0] for p in pairs])).logits
        correct += int((logits.argmax(-1) == torch.tensor([p[1] for p in pairs])).sum())
    return {"accuracy": correct / n, "n_sentences": n, "seed": seed}


def train(out: Path, *, steps: int = 1500, seed: int = 0) -> tuple[float, float]:
    rng = _train.setup(seed)
    tokenizer = build_tokenizer()
    model = NegationClassifier(NegationClassifierConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id))
    val = lambda: "val acc %.3f" % evaluate(model, tokenizer, n=500, seed=10_001)["accuracy"]
    loss = lambda m, b: F.cross_entropy(m(b["input_ids"], b["attention_mask"]).logits, b["labels"])
    secs = _train.train_loop(model, _batches(rng, tokenizer, 64), loss, steps=steps, lr=1e-3, warmup=100,
                             log_every=250, evaluate=val)
    save_negation_classifier(model, tokenizer, out)
    return secs


def load(folder: Path):
    return load_negation_classifier(folder)
