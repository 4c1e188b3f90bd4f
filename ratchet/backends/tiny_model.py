"""A tiny causal language model built from a config, for the ``trl`` backend's offline tests.

No download anywhere: a byte-level BPE tokenizer is trained with ``tokenizers`` on the message
texts of the bundled sample (``ratchet/data/sample``), given a chat template by hand (a trained
tokenizer has none, and TRL and :mod:`ratchet.backends.trl` format every example through it),
and a 2-layer GPT-2 with small dimensions is initialised from a config. Both are saved to a
folder that is then a base model path like any other (``ModelSpec.model_ref``). A few training
steps on it take seconds on a CPU, which is what lets CI prove that SFT, DPO and KTO really
lower the loss. Needs the ``train`` extra; imported only when called.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "data" / "sample"
EOS = "<|endoftext|>"
PAD = "<|pad|>"
#: One line per message, ``<|role|>`` then the content then EOS; a generation prompt opens an
#: assistant turn. Simple on purpose: the model is for tests, not for quality.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>"
    "{{ message['content'] if message['content'] is not none else '' }}{{ eos_token }}"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def sample_texts(sample_dir: Path = SAMPLE_DIR, limit: int = 2000) -> list[str]:
    """Message contents of the bundled sample's interactions (synthetic data), at most ``limit``."""
    texts: list[str] = []
    for path in sorted(sample_dir.glob("interactions-*.jsonl")):
        for line in path.read_bytes().splitlines():  # the sample has bad lines on purpose
            try:
                record = json.loads(line.decode("utf-8"))
            except ValueError:  # UnicodeDecodeError included
                continue
            messages = record.get("messages") if isinstance(record, dict) else None
            for message in messages if isinstance(messages, list) else []:
                content = message.get("content") if isinstance(message, dict) else None
                if isinstance(content, str) and content:
                    texts.append(content)
            if len(texts) >= limit:
                return texts
    return texts


def _batches(texts: Iterable[str]) -> Iterator[str]:
    yield from texts


def build_tiny_model(
    folder: Path,
    texts: list[str] | None = None,
    *,
    vocab_size: int = 800,
    n_layer: int = 2,
    n_embd: int = 64,
    n_head: int = 2,
    n_positions: int = 256,
    seed: int = 0,
) -> Path:
    """Train the tokenizer, initialise the model, save both to ``folder`` and return it."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    corpus = texts if texts is not None else sample_texts()
    if not corpus:
        raise ValueError("tiny model: no texts to train the tokenizer on")
    roles = [f"<|{r}|>" for r in ("system", "developer", "user", "assistant", "tool")]
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS, PAD, *roles],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    raw.train_from_iterator(_batches(corpus), trainer=trainer)
    tokenizer: Any = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        eos_token=EOS,
        bos_token=EOS,
        pad_token=PAD,
        unk_token=EOS,
        model_max_length=n_positions,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = GPT2LMHeadModel(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
