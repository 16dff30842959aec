"""Fixtures of the bench smoke tests: a tiny HuggingFace BERT directory like all-MiniLM-L6-v2's (config.json,
model.safetensors, tokenizer.json; no vocab.txt, no MLM head)."""
import os

import pytest

WORDS = ("the a of to and in is on for with said by at from it was as that he his has be have are will market "
         "shares company film music game election government minister party player team club win match "
         "technology phone computer software internet users profit bank economy growth sales").split()


@pytest.fixture(scope="session")
def tiny_hf_dir(tmp_path_factory):
    import tokenizers
    import torch
    import transformers

    path = str(tmp_path_factory.mktemp("tiny_hf"))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list("abcdefghijklmnopqrstuvwxyz0123456789.,'-")
    vocab = list(dict.fromkeys(vocab + list(WORDS) + ["##" + c for c in "abcdefghijklmnopqrstuvwxyz0123456789"]))
    vocab_file = os.path.join(path, "vocab.txt")
    with open(vocab_file, "w", encoding="utf-8") as f:
        f.write("".join(t + "\n" for t in vocab))
    tokenizers.BertWordPieceTokenizer(vocab_file, lowercase=True).save(os.path.join(path, "tokenizer.json"))
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    transformers.BertModel(config).save_pretrained(path, safe_serialization=True)
    for name in os.listdir(path):  # keep only what the packaged MiniLM directory has
        if name not in ("config.json", "model.safetensors", "tokenizer.json"):
            os.remove(os.path.join(path, name))
    return path
