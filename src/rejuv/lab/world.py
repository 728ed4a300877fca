"""The lab's world: a character tokenizer and a small Llama, 'pre-trained' here on task text.

Nothing is downloaded. The vocabulary is the characters the task uses, four
special tokens, and `\boxed{` as one token (the answer format costs one
prediction, not seven), so the model is small and CPU-cheap (cost is dominated
by the vocabulary). The special tokens are set explicitly: LlamaConfig's default
`eos_token_id=2` would otherwise be whatever character sits at id 2.
"""

from __future__ import annotations

from pathlib import Path

from rejuv.lab.tokenizer import make_char_tokenizer

WORDS = ["\\boxed{"]  # whole tokens


def build_base_model(folder: Path, hidden: int, layers: int, seed: int):
    """A randomly initialised Llama with the char tokenizer, saved to `folder`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = make_char_tokenizer(chat_template=None, words=WORDS)  # the task prompts are plain text
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
