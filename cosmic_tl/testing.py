"""Tiny randomly initialised chat models for tests, notebooks in smoke mode and benchmarks.

``make_tiny_chat_model(dir)`` writes a Hugging Face folder (Qwen2 architecture, a byte-level BPE
tokenizer trained on a few sentences, a Qwen-style chat template with a default system turn) that
``cosmic_tl.load_model(dir)`` loads offline in well under a second.
"""

from __future__ import annotations

from pathlib import Path

QWEN_STYLE_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\nYou are a tiny helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message.role != 'system' or not loop.first %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

_CORPUS = [
    "I'm sorry, but I can't help with that. As an AI language model I cannot assist.",
    "Write a poem about the sea. Explain how photosynthesis works in plants.",
    "Give three tips for staying healthy. How do I bake bread at home?",
    "Describe the water cycle. Name three popular cloud computing services.",
    "Here is a short story about a cat and a dog who became friends.",
    "<|im_start|>system\n<|im_end|>\n<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n" * 8,
    "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,;:!?'\"-()",
]
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def make_tiny_tokenizer(vocab_size: int = 384):
    """A byte-level BPE tokenizer with Qwen's special tokens and chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",
    )
    fast.chat_template = QWEN_STYLE_TEMPLATE
    return fast


def make_tiny_chat_model(
    out_dir: str | Path,
    *,
    n_layers: int = 10,
    d_model: int = 64,
    n_heads: int = 4,
    seed: int = 0,
    norm_gains: bool = False,
) -> Path:
    """Write a tiny random Qwen2 chat model to ``out_dir`` (a Hugging Face folder) and return it.

    Args:
        out_dir: The folder; an existing model there is returned as is.
        n_layers, d_model, n_heads: The shape.
        seed: The weights' seed.
        norm_gains: Give every RMSNorm a random gain (uniform in [0.5, 1.5]) instead of ones, so
            that a read-out which drops the final norm's gain differs from one that keeps it
            (docs/method.md §2). Off by default: the models made so far, and the numbers pinned
            on them, stay as they are.
    """
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    out_dir = Path(out_dir)
    if (out_dir / "config.json").is_file():
        return out_dir
    tok = make_tiny_tokenizer()
    cfg = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=d_model,
        intermediate_size=2 * d_model,
        num_hidden_layers=n_layers,
        num_attention_heads=n_heads,
        num_key_value_heads=n_heads // 2,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(cfg)
    # Larger-than-default init so that random activations are far from isotropic noise.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.08)
        if norm_gains:
            for name, p in model.named_parameters():
                if name.endswith("norm.weight"):
                    p.uniform_(0.5, 1.5)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir
