"""A character tokenizer built locally (nothing is downloaded), for the lab's world and the tests.

One token per character, four special tokens, optional whole-word tokens and a minimal chat template;
vocabulary size drives a small model's cost on a CPU, so it stays in the tens.
"""

from __future__ import annotations

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
CHARS = list(" 0123456789+-*=.,:?\\{}()abcdefghijklmnopqrstuvwxyz|<>/;")
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
