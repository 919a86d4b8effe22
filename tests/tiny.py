"""Tiny randomly initialised models of every supported architecture (no weights, milliseconds), and the tiny task."""

from __future__ import annotations

import torch
from transformers import (
    AutoModelForCausalLM,
    Gemma2Config,
    Gemma3TextConfig,
    GemmaConfig,
    GPT2Config,
    GPTNeoXConfig,
    LlamaConfig,
    MistralConfig,
    OPTConfig,
    Phi3Config,
    Qwen2Config,
    Qwen3Config,
)

VOCAB = 128
_LLAMA_ARGS = dict(
    vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
)

CONFIGS = {
    "LlamaForCausalLM": lambda **kw: LlamaConfig(**kw, **_LLAMA_ARGS),
    "MistralForCausalLM": lambda **kw: MistralConfig(**kw, **_LLAMA_ARGS, sliding_window=None),
    "Qwen2ForCausalLM": lambda **kw: Qwen2Config(**kw, **_LLAMA_ARGS),
    "Qwen3ForCausalLM": lambda **kw: Qwen3Config(**kw, **_LLAMA_ARGS, head_dim=8),
    "GemmaForCausalLM": lambda **kw: GemmaConfig(**kw, **_LLAMA_ARGS, head_dim=8),
    "Gemma2ForCausalLM": lambda **kw: Gemma2Config(**kw, **_LLAMA_ARGS, head_dim=8, sliding_window=4),
    "Gemma3ForCausalLM": lambda **kw: Gemma3TextConfig(**kw, **_LLAMA_ARGS, head_dim=8, sliding_window=4),
    "Phi3ForCausalLM": lambda **kw: Phi3Config(**kw, **_LLAMA_ARGS),
    "GPT2LMHeadModel": lambda **kw: GPT2Config(**kw, vocab_size=VOCAB, n_embd=32, n_layer=4, n_head=4, n_positions=128),
    "GPTNeoXForCausalLM": lambda **kw: GPTNeoXConfig(**kw, 
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
        max_position_embeddings=128,
    ),
    "OPTForCausalLM": lambda **kw: OPTConfig(**kw, 
        vocab_size=VOCAB, hidden_size=32, ffn_dim=64, num_hidden_layers=4, num_attention_heads=4,
        max_position_embeddings=128, word_embed_proj_dim=32,
    ),
}


def tiny_config(architecture: str = "LlamaForCausalLM"):
    return CONFIGS[architecture](bos_token_id=1, eos_token_id=2, pad_token_id=0)


def tiny_model(architecture: str = "LlamaForCausalLM", seed: int = 0):
    """A randomly initialised model with eager attention, in eval mode."""
    torch.manual_seed(seed)
    config = tiny_config(architecture)
    config._attn_implementation = "eager"
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()
    assert type(model).__name__ == architecture, type(model).__name__
    return model


WORDS = (
    "<pad> <s> </s> <unk> negative positive good bad great awful movie food the was is a not very "
    "review sentiment of this or answer with one word : . ? ! , and it i liked hated service plot"
).split()
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} </s> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)


def tiny_tokenizer(chat: bool = False, bos: bool = False):
    """A whitespace word-level tokenizer over `WORDS` (+ role markers), vocab < 128, left padding.

    ``bos=True``: it puts ``<s>`` before every text, as Llama, Mistral and Gemma tokenizers do.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(WORDS + ["<|user|>", "<|assistant|>", "<|system|>"])}
    assert len(vocab) <= VOCAB
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    if bos:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", vocab["<s>"])]
        )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    fast.padding_side = "left"
    if chat:
        fast.chat_template = CHAT_TEMPLATE
    return fast


def sentiment_task(name: str = "tiny_sentiment"):
    """The tiny sentiment task of the unit tests, named ``name`` (a registered dataset needs its own name).

    Plain prompt (no chat template), labels and verbalizers ``("negative", "positive")``: every word of
    its prompt is in the tiny tokenizer's vocabulary. The ``tiny_task`` fixture (conftest.py) is this task.
    """
    from toolkit.data.task import Task

    return Task(name=name, instruction="sentiment of this review ?", label_names=("negative", "positive"),
                verbalizers=("negative", "positive"), input_name="review", use_chat_template=False)


TINY_TASK = sentiment_task()
