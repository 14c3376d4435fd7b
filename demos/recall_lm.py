"""recall-lm: a 2-layer GPT-2 trained on a synthetic retrieval language with a byte-level BPE tokenizer.

A text lists 2-4 facts "owner colour object" and asks about one owner, e.g.
    "ann red kite . bob blue cup . what does ann have ? ann red kite ."
Ground truth: each answer word (colour, object) copies the same word of the queried fact. The owner
stands right before the colour so that the task is solved by the classic two-layer circuit: a
previous-token head (layer 0) and an induction / retrieval head (layer 1) (Olsson et al. 2022).
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
TRAINING = ("2-layer GPT-2 (n_embd 64, 4 heads), sinusoidal init of the learned positions, AdamW lr 2e-3 "
            "warmup-cosine, batch 64 texts with two questions each; loss = LM CE + CE of the answer words + 0.5 x "
            "attention supervision of layer 1 head 0 on each answer word's source + 0.1 x previous-token supervision "
            "of layer 0 head 0 (it emerges without it, but only at ~0.35 pattern score)")
NAMES = "ann bob cat dan eve fay gus hal ivy jon kim leo mia ned oli pam".split()
COLOURS = "red blue green black white pink brown gold grey orange".split()
OBJECTS = "kite cup hat ball book lamp sock drum fish cake key ring".split()
EOS = "<|endoftext|>"
MAX_POSITIONS = 256


@dataclass(frozen=True)
class RecallExample:
    """words: the text split on spaces; copies: (answer index, source index) of every answer word, in
    order: answer word i copies the same word of the queried fact. `answer`/`source`: the first
    question's (colour, object) indices."""

    words: list[str]
    copies: tuple[tuple[int, int], ...]

    @property
    def text(self) -> str:
        return " ".join(self.words)

    @property
    def answer(self) -> tuple[int, int]:
        return self.copies[0][0], self.copies[1][0]

    @property
    def source(self) -> tuple[int, int]:
        return self.copies[0][1], self.copies[1][1]


def make_example(rng: np.random.Generator, n_facts: int | None = None, n_questions: int = 1) -> RecallExample:
    """2-4 facts (distinct names, colours, objects), then `n_questions` questions about distinct owners."""
    k = int(rng.integers(2, 5)) if n_facts is None else n_facts
    names = rng.choice(NAMES, k, replace=False)
    colours = rng.choice(COLOURS, k, replace=False)
    objects = rng.choice(OBJECTS, k, replace=False)
    words: list[str] = []
    for n, c, o in zip(names, colours, objects):
        words += [n, c, o, "."]
    copies = []
    for q in rng.choice(k, min(n_questions, k), replace=False):
        words += ["what", "does", names[q], "have", "?", names[q], colours[q], objects[q], "."]
        copies += [(len(words) - 3, 4 * int(q) + 1), (len(words) - 2, 4 * int(q) + 2)]
    return RecallExample([str(w) for w in words], tuple(copies))


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
    for w in [*NAMES, *COLOURS, *OBJECTS, ".", "what", "does", "have", "?"]:
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
    config = GPT2Config(vocab_size=vocab_size, n_positions=MAX_POSITIONS, n_embd=64, n_layer=2, n_head=4,
                        n_inner=256, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                        bos_token_id=eos, eos_token_id=eos, pad_token_id=eos)
    model = GPT2LMHeadModel(config)
    with torch.no_grad():  # sinusoidal init of the learned positions: offsets ("3 tokens back") become easy to learn
        model.transformer.wpe.weight.copy_(_sinusoidal(MAX_POSITIONS, config.n_embd) * 0.05)
    return model


def _sinusoidal(n: int, d: int) -> torch.Tensor:
    """[n, d]: PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(...) (Vaswani et al. 2017)."""
    pos = torch.arange(n, dtype=torch.float32)[:, None]  # [n, 1]
    freq = torch.exp(-np.log(10_000.0) * torch.arange(0, d, 2, dtype=torch.float32) / d)  # [d/2]
    pe = torch.zeros(n, d)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
    return pe


SUPERVISED_HEAD = (1, 0)  # (layer, head) whose attention gets the auxiliary retrieval loss in training
PREVIOUS_HEAD = (0, 0)  # (layer, head) nudged towards the previous token in training


def _loss(model, batch) -> torch.Tensor:
    """LM cross-entropy over real tokens + cross-entropy of the answer words + attention supervision.

    Attention supervision (after Strubell et al. 2018, "Linguistically-Informed Self-Attention"): for
    every answer word at position p copied from position s, add -ln a[p-1, s] of head SUPERVISED_HEAD
    (the attention of the position that predicts the word, on its source). It makes the retrieval
    circuit form within the CPU budget. The previous-token head it relies on emerges unsupervised but
    only on the rows that need it (pattern score ~0.35 without help); a weak -0.1 ln a[i, i-1] term on
    head PREVIOUS_HEAD makes it a clean previous-token head (score >= 0.5) over every row.
    """
    out = model(input_ids=batch["ids"], attention_mask=batch["mask"], output_attentions=True)
    logits = out.logits[:, :-1]  # [batch, T-1, vocab]
    tgt = batch["ids"][:, 1:].clone()
    tgt[batch["mask"][:, 1:] == 0] = -100
    lm = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=-100)
    rows = torch.arange(len(tgt))[:, None]
    pos = batch["answer"]  # [batch, A] token positions of the answer words; predicted from pos - 1
    ans = F.cross_entropy(logits[rows, pos - 1].reshape(-1, logits.shape[-1]), batch["ids"][rows, pos].reshape(-1))
    layer, head = SUPERVISED_HEAD
    att = out.attentions[layer][:, head]  # [batch, T, T]
    sup = -torch.log(att[rows, pos - 1, batch["source"]] + 1e-9).mean()  # [batch, A] -> scalar
    layer, head = PREVIOUS_HEAD
    prev = torch.diagonal(out.attentions[layer][:, head], offset=-1, dim1=-2, dim2=-1)  # [batch, T-1]: a[i, i-1]
    real = batch["mask"][:, 1:].bool()  # rows i >= 1 that are real tokens
    prev_loss = -torch.log(prev[real] + 1e-9).mean()
    return lm + ans + 0.5 * sup + 0.1 * prev_loss


def _batches(rng, vocab, eos, n):
    """Training texts ask two questions (more retrieval signal per text); evaluation asks one."""
    while True:
        ex = [make_example(rng, n_questions=2) for _ in range(n)]
        ids, mask = encode(ex, vocab, eos)
        yield {"ids": ids, "mask": mask, "answer": torch.tensor([[a + 1 for a, _ in e.copies] for e in ex]),
               "source": torch.tensor([[s + 1 for _, s in e.copies] for e in ex])}


def _answer_correct(pred: torch.Tensor, ids: torch.Tensor, e: RecallExample) -> bool:
    """Greedy answer right: argmax predictions [T] give the colour, object and "." of ids [T] (EOS at 0)."""
    a0, a1 = e.answer[0] + 1, e.answer[1] + 1
    return bool((pred[a0 - 1 : a1 + 1] == ids[a0 : a1 + 2]).all())


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
            correct += _answer_correct(pred[i], ids[i], e)
            a0, a1 = e.answer[0] + 1, e.answer[1] + 1  # token positions (EOS at 0)
            for a, s in zip((a0, a1), e.source):
                h = layers[i, :, :, a - 1].argmax(-1) == s + 1  # [layers, heads]
                hits = h.float() if hits is None else hits + h.float()
        # previous-token score per head (analysis.head_patterns): mean over rows of a[i, i-1]
        pats = head_patterns(layers.transpose(0, 1), causal=True, key_mask=mask.bool())  # scores [layers, batch, heads]
        s = pats.scores["previous"].sum(1)  # [layers, heads], summed over the batch
        prev = s if prev is None else prev + s
    retrieval = hits / (2 * n)  # [layers, heads]
    rl, rh = divmod(int(retrieval.argmax()), retrieval.shape[1])
    ablated = _answer_accuracy(model, tokenizer, n=n, seed=seed, batch=batch, ablate=(rl, rh))
    prev_score = prev / n  # [layers, heads]
    pl, ph = divmod(int(prev_score.argmax()), prev_score.shape[1])
    return {
        "answer_accuracy": correct / n,
        "retrieval_head_score": float(retrieval.max()),
        "retrieval_head": f"layer {rl} head {rh}",
        "answer_accuracy_retrieval_head_ablated": ablated,
        "previous_token_score": float(prev_score.max()),
        "previous_token_head": f"layer {pl} head {ph}",
        "n_texts": n,
        "seed": seed,
    }


def _answer_accuracy(model, tokenizer, *, n: int, seed: int, batch: int, ablate: tuple[int, int]) -> float:
    """Answer accuracy with one head's output zeroed (its slice of the input of the layer's c_proj)."""
    layer, head = ablate
    hd = model.config.n_embd // model.config.n_head

    def zero_head(_module, args):
        x = args[0].clone()  # [batch, T, heads * head_dim], heads merged
        x[..., head * hd : (head + 1) * hd] = 0
        return (x,)

    rng = np.random.default_rng(seed)
    vocab, eos = word_ids(tokenizer), tokenizer.eos_token_id
    handle = model.transformer.h[layer].attn.c_proj.register_forward_pre_hook(zero_head)
    correct = 0
    try:
        for start in range(0, n, batch):
            ex = [make_example(rng) for _ in range(min(batch, n - start))]
            ids, mask = encode(ex, vocab, eos)
            with torch.no_grad():
                pred = model(input_ids=ids, attention_mask=mask).logits.argmax(-1)  # [batch, T]
            correct += sum(_answer_correct(p, i, e) for p, i, e in zip(pred, ids, ex))
    finally:
        handle.remove()
    return correct / n


def train(out: Path, *, steps: int = 3000, seed: int = 0) -> tuple[float, float]:
    rng = _train.setup(seed)
    tokenizer = train_tokenizer(seed)
    vocab, eos = word_ids(tokenizer), tokenizer.eos_token_id
    model = build_model(len(tokenizer), eos)
    model.set_attn_implementation("eager")  # training reads the attention probabilities (supervision)
    val = lambda: str({k: v for k, v in evaluate(model, tokenizer, n=250, seed=10_001).items() if k in TARGETS or "head" in k})
    secs = _train.train_loop(model, _batches(rng, vocab, eos, 64), _loss, steps=steps, lr=2e-3, warmup=200,
                             log_every=250, evaluate=val)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return secs


def load(folder: Path):
    from transformers import AutoTokenizer

    model = GPT2LMHeadModel.from_pretrained(folder, attn_implementation="eager").eval()
    return model, AutoTokenizer.from_pretrained(folder)
