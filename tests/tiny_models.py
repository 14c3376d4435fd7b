"""Tiny random models and tokenizers for tests (hidden 32, 2 layers, 4 heads; nothing downloads).

Every builder seeds torch, returns its model in eval mode, and builds in well under a second.
Shared by the whole test suite: import from here instead of writing new builders.
"""
from __future__ import annotations

from pathlib import Path

import torch

WORDS = (
    "the a an cat dog bird fish sat ran flew swam on under over mat log tree pond and or but is was "
    "big small red blue green happy sad very quite it they we you he she saw heard liked ate "
    "quick brown fox jumps lazy hello world attention head layer token model image patch"
).split()
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<s>", "</s>"]
VOCAB = 99
HIDDEN, LAYERS, HEADS, FFN = 32, 2, 4, 37
IMAGE, PATCH = 32, 8  # 4 x 4 patch grid


def tiny_tokenizer(*, template: str | None = "bert"):
    """A WordLevel tokenizer over WORDS wrapped in PreTrainedTokenizerFast.

    template="bert": "[CLS] ... [SEP]" around each text (pairs: "[CLS] a [SEP] b [SEP]");
    template=None: no special tokens added (causal LMs); bos "<s>", eos "</s>", pad "[PAD]".
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if template == "bert":
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        bos_token="<s>",
        eos_token="</s>",
    )


def tiny_image_processor():
    """A PIL-backend ViT image processor resizing to IMAGE x IMAGE (no torchvision needed)."""
    from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

    return ViTImageProcessorPil(size={"height": IMAGE, "width": IMAGE})


def _build(model_cls, config):
    torch.manual_seed(0)
    return model_cls(config).eval()


_TEXT = dict(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
             intermediate_size=FFN)


def tiny_bert(**overrides):
    from transformers import BertConfig, BertForSequenceClassification

    cfg = dict(_TEXT, max_position_embeddings=64, type_vocab_size=2, pad_token_id=0)
    return _build(BertForSequenceClassification, BertConfig(**{**cfg, **overrides}))


def tiny_gpt2(**overrides):
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = dict(vocab_size=VOCAB, n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, n_positions=64,
               bos_token_id=5, eos_token_id=6, pad_token_id=0)
    return _build(GPT2LMHeadModel, GPT2Config(**{**cfg, **overrides}))


def tiny_llama(**overrides):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = dict(_TEXT, num_key_value_heads=2, max_position_embeddings=64, bos_token_id=5, eos_token_id=6,
               pad_token_id=0)
    return _build(LlamaForCausalLM, LlamaConfig(**{**cfg, **overrides}))


def tiny_t5(**overrides):
    from transformers import T5Config, T5ForConditionalGeneration

    cfg = dict(vocab_size=VOCAB, d_model=HIDDEN, d_kv=HIDDEN // HEADS, d_ff=FFN, num_layers=LAYERS,
               num_decoder_layers=LAYERS, num_heads=HEADS, decoder_start_token_id=0, pad_token_id=0,
               eos_token_id=6, relative_attention_num_buckets=8)
    return _build(T5ForConditionalGeneration, T5Config(**{**cfg, **overrides}))


def tiny_bart(**overrides):
    from transformers import BartConfig, BartForConditionalGeneration

    cfg = dict(vocab_size=VOCAB, d_model=HIDDEN, encoder_layers=LAYERS, decoder_layers=LAYERS,
               encoder_attention_heads=HEADS, decoder_attention_heads=HEADS, encoder_ffn_dim=FFN,
               decoder_ffn_dim=FFN, max_position_embeddings=64, pad_token_id=0, bos_token_id=5,
               eos_token_id=6, decoder_start_token_id=6, forced_eos_token_id=None)
    return _build(BartForConditionalGeneration, BartConfig(**{**cfg, **overrides}))


def _vit_config(**overrides):
    from transformers import ViTConfig

    cfg = dict(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS, intermediate_size=FFN,
               image_size=IMAGE, patch_size=PATCH, num_channels=3, num_labels=3)
    return ViTConfig(**{**cfg, **overrides})


def tiny_vit(**overrides):
    from transformers import ViTForImageClassification

    return _build(ViTForImageClassification, _vit_config(**overrides))


def tiny_clip(**overrides):
    from transformers import CLIPConfig, CLIPModel

    text = dict(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                intermediate_size=FFN, max_position_embeddings=64, bos_token_id=5, eos_token_id=6,
                pad_token_id=0, projection_dim=16)
    vision = dict(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS, intermediate_size=FFN,
                  image_size=IMAGE, patch_size=PATCH, projection_dim=16)
    return _build(CLIPModel, CLIPConfig(text_config=text, vision_config=vision, projection_dim=16, **overrides))


def tiny_vision_encoder_decoder():
    """ViT encoder + GPT-2 decoder with cross-attention (image-to-text)."""
    from transformers import GPT2Config, VisionEncoderDecoderConfig, VisionEncoderDecoderModel

    dec = GPT2Config(vocab_size=VOCAB, n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, n_positions=64,
                     bos_token_id=5, eos_token_id=6, pad_token_id=0, add_cross_attention=True, is_decoder=True)
    cfg = VisionEncoderDecoderConfig.from_encoder_decoder_configs(_vit_config(), dec)
    cfg.decoder_start_token_id = 5
    cfg.pad_token_id = 0
    cfg.eos_token_id = 6
    return _build(VisionEncoderDecoderModel, cfg)


def save_tiny(model, tokenizer_or_processor, path) -> Path:
    """save_pretrained the model (safetensors) and its tokenizer/processor (or a list of both) into `path`."""
    path = Path(path)
    model.save_pretrained(path)
    extras = tokenizer_or_processor if isinstance(tokenizer_or_processor, (list, tuple)) else [tokenizer_or_processor]
    for extra in extras:
        if extra is not None:
            extra.save_pretrained(path)
    return path


def text_inputs(tokenizer, texts=("the cat sat on the mat", "a dog ran"), **kw):
    """Padded batch for `texts` as torch tensors."""
    return tokenizer(list(texts), return_tensors="pt", padding=True, **kw)


def pixel_inputs(batch: int = 2, seed: int = 0) -> torch.Tensor:
    """Random pixel_values [batch, 3, IMAGE, IMAGE]."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, IMAGE, IMAGE, generator=g)
