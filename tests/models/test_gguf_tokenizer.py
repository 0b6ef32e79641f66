"""The check that a tokenizer transformers built from a GGUF is the file's own (core.models.gguf_tokenizer),
on a hand-made vocabulary: faithful, without the BOS token the file asks for, and with merges that split
words (what transformers 5.17 built for Gemma 3: the model then wrote nonsense)."""

from types import SimpleNamespace

from core.models.gguf_tokenizer import GGUFVocabulary, tokenizer_problem

PIECES = ["<pad>", "<bos>", "a", "t", "i", "o", "n", "ation", "nation", "Question"]
BOS = 1


class FakeTokenizer:
    """Encodes a whole vocabulary piece as its id, anything else letter by letter; `splits` splits every word."""

    def __init__(self, adds_bos=True, splits=False):
        self.adds_bos, self.splits = adds_bos, splits

    def __call__(self, text, add_special_tokens=True):
        whole = text in PIECES and not self.splits
        ids = [PIECES.index(text)] if whole else [PIECES.index(c) if c in PIECES else 0 for c in text]
        return SimpleNamespace(input_ids=([BOS] if add_special_tokens and self.adds_bos else []) + ids)


def test_a_faithful_tokenizer_passes():
    assert tokenizer_problem(FakeTokenizer(), GGUFVocabulary(PIECES, True, BOS)) is None


def test_a_missing_bos_token_is_named():
    problem = tokenizer_problem(FakeTokenizer(adds_bos=False), GGUFVocabulary(PIECES, True, BOS))
    assert problem == "prompts do not start with the BOS token 1, which the file asks for"
    # a file that asks for none is not held to it
    assert tokenizer_problem(FakeTokenizer(adds_bos=False), GGUFVocabulary(PIECES, False, BOS)) is None


def test_words_that_encode_to_other_tokens_are_named():
    # 3 whole-word pieces (ation, nation, Question), all split: 3 > 5% of 3
    problem = tokenizer_problem(FakeTokenizer(splits=True), GGUFVocabulary(PIECES, True, BOS))
    assert problem == "3 of 3 whole-word pieces of its vocabulary encode to other tokens ('ation': [2, 3, 4, 5, 6], not [7])"
