"""Is the tokenizer transformers built from a GGUF the model's own? Checked against the file's vocabulary.

transformers rebuilds a GGUF's tokenizer from the vocabulary and scores the file stores, and some versions
get it wrong without a word: transformers 5.17 to 5.22 build Gemma 3's with no start-of-text token and
with merges that split common words ("ation" -> "at" + "ion"), and Gemma then writes nonsense; 5.23 and
later build it right. Two checks catch this: the file's own flag `tokenizer.ggml.add_bos_token`, and that common
whole-word pieces of the vocabulary encode to themselves (a faithful tokenizer: 0 of 200 differ for
SmolLM2 and Gemma 3; the broken one: 171 of 200).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

WORD_PIECE = re.compile(r"[A-Za-z]{5,12}")
WORDS_CHECKED = 200
WORDS_ALLOWED_TO_DIFFER = 0.05


@dataclass(frozen=True)
class GGUFVocabulary:
    tokens: list[str]  # the piece of each token id, as the file stores it
    add_bos: bool  # the file says prompts start with the BOS token
    bos_id: int | None


def read_vocabulary(gguf_file: Path) -> GGUFVocabulary:
    from gguf import GGUFReader

    fields = GGUFReader(str(gguf_file)).fields

    def scalar(key):
        field = fields.get(key)
        return field.parts[field.data[0]][0].item() if field is not None and field.data else None

    pieces = fields["tokenizer.ggml.tokens"]
    tokens = [bytes(pieces.parts[i]).decode("utf-8", "replace") for i in pieces.data]
    return GGUFVocabulary(tokens, bool(scalar("tokenizer.ggml.add_bos_token")), scalar("tokenizer.ggml.bos_token_id"))


def tokenizer_problem(tokenizer, vocabulary: GGUFVocabulary) -> str | None:
    """What makes `tokenizer` differ from the one `vocabulary` describes, in words; None if nothing."""
    if vocabulary.add_bos and vocabulary.bos_id is not None:
        first = tokenizer("Hello", add_special_tokens=True).input_ids[:1]
        if first != [vocabulary.bos_id]:
            return f"prompts do not start with the BOS token {vocabulary.bos_id}, which the file asks for"
    words = [(token_id, piece) for token_id, piece in enumerate(vocabulary.tokens) if WORD_PIECE.fullmatch(piece)]
    words = words[:WORDS_CHECKED]
    encoded = [(piece, tokenizer(piece, add_special_tokens=False).input_ids, token_id) for token_id, piece in words]
    differ = [(piece, ids, token_id) for piece, ids, token_id in encoded if ids != [token_id]]
    if words and len(differ) > WORDS_ALLOWED_TO_DIFFER * len(words):
        piece, ids, token_id = differ[0]
        return (f"{len(differ)} of {len(words)} whole-word pieces of its vocabulary encode to other tokens "
                f"('{piece}': {ids}, not [{token_id}])")
    return None
