"""The chat tokenizer of the test models (tasks/policies/chat_model.py), padded to a real vocabulary."""

from tasks.policies.chat_model import TURN_END, build_chat_tokenizer

TEXTS = ["<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\nStep 1: 2 + 3 = 5\n\n\\boxed{5}<|im_end|>\n"] * 4


def test_a_padded_tokenizer_decodes_every_id_and_tokenizes_as_before():
    plain = build_chat_tokenizer(TEXTS, vocab_size=300)
    padded = build_chat_tokenizer(TEXTS, vocab_size=300, pad_to=1000)

    assert len(plain) < 1000 and len(padded) == 1000
    assert padded.decode([999]) == "<|extra_999|>"
    assert all(padded.convert_ids_to_tokens(index) is not None for index in range(1000))
    assert padded(TEXTS[0])["input_ids"] == plain(TEXTS[0])["input_ids"]
    assert padded.convert_tokens_to_ids(TURN_END) == plain.convert_tokens_to_ids(TURN_END)
    assert padded.decode(padded(TEXTS[0])["input_ids"]) == TEXTS[0]
