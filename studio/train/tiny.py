"""A tiny causal LM with random weights and a locally trained tokenizer, for tests, benchmarks and the demo.

Everything is built offline: the tokenizer is trained with the `tokenizers` library on a small built-in
text, the model comes from a config, and both are saved with `save_pretrained`, so callers load them
through the real `from_pretrained(folder)` path.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

PAD = "<|pad|>"
EOS = "<|eos|>"
BOS = "<|bos|>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")

# The turns end with EOS so that a model trained on chats stops after its answer.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|eos|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@dataclass(frozen=True)
class ChatStyle:
    """The special tokens and chat template of a model family, rebuilt on the tiny vocabulary: real templates
    end a turn with a token of their own, not with EOS, and tests must see that difference."""

    template: str
    eos: str
    bos: str
    end_of_turn: str
    extra: tuple[str, ...]


CHAT_STYLES = {
    "tiny": ChatStyle(CHAT_TEMPLATE, EOS, BOS, EOS, ROLE_TOKENS),
    # Qwen / ChatML: turns end with <|im_end|> and a newline; EOS is <|endoftext|>
    "chatml": ChatStyle(
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
        "<|endoftext|>", BOS, "<|im_end|>", ("<|im_start|>", "<|im_end|>")),
    # Gemma: BOS written by the template, the assistant is 'model', turns end with <end_of_turn>; EOS is <eos>
    "gemma": ChatStyle(
        "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' "
        "else m['role'] }}\n{{ m['content'] | trim }}<end_of_turn>\n{% endfor %}"
        "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}",
        "<eos>", "<bos>", "<end_of_turn>", ("<start_of_turn>", "<end_of_turn>")),
    # Phi-3: turns end with <|end|>; a conversation rendered without a generation prompt ends with EOS too
    "phi3": ChatStyle(
        "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% else %}{{ eos_token }}{% endif %}",
        "<|endoftext|>", BOS, "<|end|>", ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>")),
}

_TEXT = (
    "the a an of to and in is it that for on with as was he she they we you i be this are by at from or "
    "have not but what all were when there can one said which do their if will up other about out many then "
    "them these so some her would make like him into time has look two more write go see number no way could "
    "people my than first water been call who oil its now find long down day did get come made may part "
    "answer question plus minus times equals short long yes sure please thanks hello friend good bad nice "
    "great small big red blue green cat dog bird fish tree house car book sun moon star sky river road city "
    "because since doubles adding number itself result sum total value here is the answer indeed certainly"
)
_WORDS = _TEXT.split()


def corpus(n_lines: int = 3000, seed: int = 0) -> list[str]:
    """A deterministic pseudo-English text: enough for BPE to learn the common words as single tokens."""
    rng = random.Random(seed)
    lines = [" ".join(_WORDS)]
    for i in range(n_lines):
        n = rng.randint(4, 16)
        words = [rng.choice(_WORDS) for _ in range(n)]
        if i % 5 == 0:
            a, b = rng.randint(0, 99), rng.randint(0, 99)
            words += ["question", f"{a}", "plus", f"{b}", "equals", f"{a + b}."]
        lines.append(" ".join(words).capitalize())
    return lines


def build_tokenizer(vocab_size: int = 1024, style: str = "tiny"):
    """Train a byte-level BPE tokenizer and wrap it as a PreTrainedTokenizerFast with the chat template and
    special tokens of `style` (a key of CHAT_STYLES)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    chat = CHAT_STYLES[style]
    specials = [PAD, chat.eos, chat.bos, *chat.extra]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, eos_token=chat.eos, bos_token=chat.bos,
                                   additional_special_tokens=list(chat.extra))
    fast.chat_template = chat.template
    fast.padding_side = "right"
    return fast


def build_model(vocab_size: int, hidden: int = 64, layers: int = 2, heads: int = 4, seed: int = 0,
                pad_token_id: int = 0, eos_token_id: int = 1, bos_token_id: int = 2):
    """A Llama-architecture causal LM with random weights (so LoRA 'auto' targets are the real names)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=2048,
        tie_word_embeddings=False, pad_token_id=pad_token_id, eos_token_id=eos_token_id,
        bos_token_id=bos_token_id,
        # HF's default 0.02 leaves a 64-wide model unable to put much mass on any token (max logit ~1),
        # so no training could make its samples show a trait; 0.2 gives it the range of a real model.
        initializer_range=0.2)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = pad_token_id
    model.generation_config.eos_token_id = eos_token_id
    return model


def write_tiny_model(out: str | Path, vocab_size: int = 1024, hidden: int = 64, layers: int = 2,
                     seed: int = 0, style: str = "tiny") -> Path:
    """Build and save the tiny model + tokenizer (chat style `style`) to `out` (loadable with
    `from_pretrained(out)`)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(vocab_size, style)
    model = build_model(len(tokenizer), hidden=hidden, layers=layers, seed=seed,
                        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                        bos_token_id=tokenizer.bos_token_id)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out
