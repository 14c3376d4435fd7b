"""recall-lm: a 2-layer GPT-2 trained on a synthetic retrieval language with a byte-level BPE tokenizer.

A text lists 2-4 facts and asks about one owner, e.g.
    "ann has a red kite . bob has a blue cup . what does ann have ? a red kite ."
Ground truth: each answer word copies the same word of the queried fact.
Metrics: answer accuracy (greedy answer equals the truth), the best head's retrieval score (fraction of
answer words whose predicting position's attention peaks on the source word) and the best head's
previous-token score from `analysis.head_patterns` (mean over rows of a[i, i-1]; a head reaching
PATTERN_THRESHOLDS["previous"] = 0.5 is labelled "previous").
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from analysis import head_patterns

from demos import _attn, _train

NAME = "recall-lm"
TARGETS = {"answer_accuracy": 0.95, "retrieval_head_score": 0.90, "previous_token_score": 0.5}
NAMES = "ann bob cat dan eve fay gus hal ivy jon kim leo mia ned oli pam".split()
COLOURS = "red blue green black white pink brown gold grey orange".split()
OBJECTS = "kite cup hat ball book lamp sock drum fish cake key ring".split()
EOS = "<|endoftext|>"
MAX_POSITIONS = 256


@dataclass(frozen=True)
class RecallExample:
    """words: the text split on spaces; answer: indices of the answer's colour and object words;
    source: indices of the same words in the queried fact (answer[i] copies source[i])."""

    words: list[str]
    answer: tuple[int, int]
    source: tuple[int, int]

    @property
    def text(self) -> str:
        return " ".join(self.words)


def make_example(rng: np.random.Generator, n_facts: int | None = None) -> RecallExample:
    k = int(rng.integers(2, 5)) if n_facts is None else n_facts
    names = rng.choice(NAMES, k, replace=False)
    colours = rng.choice(COLOURS, k, replace=False)
    objects = rng.choice(OBJECTS, k, replace=False)
    words: list[str] = []
    for n, c, o in zip(names, colours, objects):
        words += [n, "has", "a", c, o, "."]
    q = int(rng.integers(k))
    words += ["what", "does", names[q], "have", "?", "a", colours[q], objects[q], "."]
    src = (6 * q + 3, 6 * q + 4)
    return RecallExample([str(w) for w in words], (len(words) - 3, len(words) - 2), src)


def train_tokenizer(seed: int = 0) -> PreTrainedTokenizerFast:
    """Byte-level BPE on generated texts: every word of the language becomes one token, any text tokenises."""
    rng = np.random.default_rng(seed)
    corpus = [make_example(rng).text for _ in range(3000)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(single=f"{EOS} $A", special_tokens=[(EOS, 0)])
    trainer = trainers.BpeTrainer(vocab_size=1000, special_tokens=[EOS], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOS, eos_token=EOS, pad_token=EOS, unk_token=None,
                                   model_max_length=MAX_POSITIONS)
    return fast


def word_ids(tokenizer) -> dict[str, int]:
    """Token id of every word of the language (with its leading space); fails if a word splits."""
    vocab = {}
    for w in [*NAMES, *COLOURS, *OBJECTS, "has", "a", ".", "what", "does", "have", "?"]:
        ids = tokenizer(w, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ValueError(f"word {w!r} is {len(ids)} tokens in the recall-lm tokenizer")
        vocab[w] = ids[0]
    return vocab


def encode(examples: list[RecallExample], vocab: dict[str, int], eos: int):
    """ids [batch, T] (EOS first, right-padded with EOS), attention mask [batch, T], positions shifted by 1 for EOS."""
    T = 1 + max(len(e.words) for e in examples)
    ids = torch.full((len(examples), T), eos)
    mask = torch.zeros((len(examples), T), dtype=torch.long)
    for i, e in enumerate(examples):
        ids[i, 1 : 1 + len(e.words)] = torch.tensor([vocab[w] for w in e.words])
        mask[i, : 1 + len(e.words)] = 1
    return ids, mask


def build_model(vocab_size: int, eos: int) -> GPT2LMHeadModel:
    config = GPT2Config(vocab_size=vocab_size, n_positions=MAX_POSITIONS, n_embd=128, n_layer=2, n_head=4,
                        n_inner=512, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                        bos_token_id=eos, eos_token_id=eos, pad_token_id=eos)
    return GPT2LMHeadModel(config)


def _loss(model, batch) -> torch.Tensor:
    """LM cross-entropy over real tokens plus the cross-entropy of the answer words (retrieval signal)."""
    logits = model(input_ids=batch["ids"], attention_mask=batch["mask"]).logits[:, :-1]  # [batch, T-1, vocab]
    tgt = batch["ids"][:, 1:].clone()
    tgt[batch["mask"][:, 1:] == 0] = -100
    lm = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=-100)
    rows = torch.arange(len(tgt))[:, None]
    pos = batch["answer"]  # [batch, 2] token positions of the answer words; predicted from pos - 1
    ans = F.cross_entropy(logits[rows, pos - 1].reshape(-1, logits.shape[-1]), batch["ids"][rows, pos].reshape(-1))
    return lm + ans


def _batches(rng, vocab, eos, n):
    while True:
        ex = [make_example(rng) for _ in range(n)]
        ids, mask = encode(ex, vocab, eos)
        yield {"ids": ids, "mask": mask, "answer": torch.tensor([[a + 1 for a in e.answer] for e in ex])}


def evaluate(model, tokenizer, *, n: int, seed: int, batch: int = 250) -> dict:
    """Answer accuracy, best retrieval head and best previous-token head on `n` fresh texts."""
    rng = np.random.default_rng(seed)
    vocab, eos = word_ids(tokenizer), tokenizer.eos_token_id
    correct, hits, prev = 0, None, None
    for start in range(0, n, batch):
        ex = [make_example(rng) for _ in range(min(batch, n - start))]
        ids, mask = encode(ex, vocab, eos)
        out, maps = _attn.capture(model, input_ids=ids, attention_mask=mask)
        layers = torch.stack(maps[(None, "self")], 1)  # [batch, layers, heads, q, k]
        pred = out.logits.argmax(-1)  # [batch, T]
        for i, e in enumerate(ex):
            a0, a1 = e.answer[0] + 1, e.answer[1] + 1  # token positions (EOS at 0)
            correct += bool((pred[i, a0 - 1 : a1 + 1] == ids[i, a0 : a1 + 2]).all())  # colour, object, "."
            for a, s in zip((a0, a1), e.source):
                h = layers[i, :, :, a - 1].argmax(-1) == s + 1  # [layers, heads]
                hits = h.float() if hits is None else hits + h.float()
        # previous-token score per head (analysis.head_patterns): mean over rows of a[i, i-1]
        pats = head_patterns(layers.transpose(0, 1), causal=True, key_mask=mask.bool())  # scores [layers, batch, heads]
        s = pats.scores["previous"].sum(1)  # [layers, heads], summed over the batch
        prev = s if prev is None else prev + s
    retrieval = hits / (2 * n)  # [layers, heads]
    prev_score = prev / n  # [layers, heads]
    rl, rh = divmod(int(retrieval.argmax()), retrieval.shape[1])
    pl, ph = divmod(int(prev_score.argmax()), prev_score.shape[1])
    return {
        "answer_accuracy": correct / n,
        "retrieval_head_score": float(retrieval.max()),
        "retrieval_head": f"layer {rl} head {rh}",
        "previous_token_score": float(prev_score.max()),
        "previous_token_head": f"layer {pl} head {ph}",
        "n_texts": n,
        "seed": seed,
    }


def train(out: Path, *, steps: int = 3000, seed: int = 0) -> float:
    rng = _train.setup(seed)
    tokenizer = train_tokenizer(seed)
    vocab, eos = word_ids(tokenizer), tokenizer.eos_token_id
    model = build_model(len(tokenizer), eos)
    val = lambda: str({k: v for k, v in evaluate(model, tokenizer, n=250, seed=10_001).items() if k in TARGETS or "head" in k})
    secs = _train.train_loop(model, _batches(rng, vocab, eos, 64), _loss, steps=steps, lr=2e-3, warmup=300,
                             log_every=250, evaluate=val)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return secs


def load(folder: Path):
    from transformers import AutoTokenizer

    model = GPT2LMHeadModel.from_pretrained(folder, attn_implementation="eager").eval()
    return model, AutoTokenizer.from_pretrained(folder)
