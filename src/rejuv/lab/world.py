"""The lab's world: a character tokenizer and a small Llama, 'pre-trained' here on task text.

Nothing is downloaded. The vocabulary is the characters the task uses, four
special tokens, and `\boxed{` as one token (the answer format costs one
prediction, not seven), so the model is small and CPU-cheap (cost is dominated
by the vocabulary). The special tokens are set explicitly: LlamaConfig's default
`eos_token_id=2` would otherwise be whatever character sits at id 2.
"""

from __future__ import annotations

from pathlib import Path

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
CHARS = list(" 0123456789+-*=.,:?\\{}()abcdefghijklmnopqrstuvwxyz|<>/;")
WORDS = ["\\boxed{"]  # whole tokens
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% if m['role'] == 'assistant' %}</s>"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def make_char_tokenizer(chars: list[str] | None = None, chat_template: str | None = CHAT_TEMPLATE,
                        words: list[str] | None = None):
    """A fast tokenizer with one token per character (and one per entry of `words`), BOS prepended, EOS/PAD set."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS + list(chars or CHARS))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")
    if words:
        fast.add_tokens(words)
    if chat_template:
        fast.chat_template = chat_template
    return fast


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
