"""Shared helpers for the pretraining-data tests: tiny vocabularies, synthetic corpora, and the original algorithm."""
import os
import random

import numpy as np

from data import pretraining, pretraining_writer

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = [f"w{i}" for i in range(120)]
PIECES = [f"##p{i}" for i in range(30)]


def tiny_vocab_tokens():
    return SPECIALS + WORDS + PIECES


def write_tiny_vocab(path):
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(tiny_vocab_tokens()) + "\n")
    return str(path)


def tiny_vocab():
    return {t: i for i, t in enumerate(tiny_vocab_tokens())}


def write_tiny_pretraining_records(directory, max_seq_length, max_predictions_per_seq, num_docs=80):
    """vocab.txt, corpus.txt and train.tfrecord (dupe factor 2) in `directory`, from the tiny vocabulary; returns
    (vocab file, records file, the writer's summary)."""
    vocab_file = write_tiny_vocab(os.path.join(directory, "vocab.txt"))
    corpus = write_text_corpus(os.path.join(directory, "corpus.txt"), num_docs=num_docs)
    vocab = tiny_vocab()
    cfg = pretraining.InstanceConfig(max_seq_length=max_seq_length, max_predictions_per_seq=max_predictions_per_seq,
                                     dupe_factor=2, **pretraining.vocab_info(vocab))
    records = os.path.join(directory, "train.tfrecord")
    summary = pretraining_writer.run(
        [corpus], [records], lambda texts: [np.asarray([vocab[w] for w in t.split()], np.int32) for t in texts],
        cfg, docs_per_chunk=40, progress=False)
    return vocab_file, records, summary


def write_text_corpus(path, num_docs=60, seed=0, max_sentences=8):
    """Documents of sentences of tiny-vocab words (a word is written as one text word: w3, or w3p1 -> w3 ##p1)."""
    rng = random.Random(seed)
    docs = []
    for _ in range(num_docs):
        sentences = []
        for _ in range(rng.randint(1, max_sentences)):
            sentences.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 14))))
        docs.append("\n".join(sentences))
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n\n".join(docs) + "\n")
    return str(path)


def word_chunk(num_docs=80, seed=0, max_sentences=10, piece_prob=0.3):
    """A TokenizedChunk over the tiny vocab: words are a base token plus 0-2 '##' pieces."""
    vocab = tiny_vocab()
    rng = random.Random(seed)
    docs = []
    for _ in range(num_docs):
        doc = []
        for _ in range(rng.randint(1, max_sentences)):
            ids = []
            for _ in range(rng.randint(2, 16)):
                ids.append(vocab[rng.choice(WORDS)])
                while rng.random() < piece_prob and len(ids) < 40:
                    ids.append(vocab[rng.choice(PIECES)])
            doc.append(ids)
        docs.append(doc)
    return pretraining.tokenized_chunk(docs)


def unique_id_chunk(num_docs=80, seed=0, max_sentences=10, first_id=1000):
    """A TokenizedChunk whose token ids are all distinct and increasing (id -> position), plus doc id per token id."""
    rng = random.Random(seed)
    docs, doc_of, next_id = [], {}, first_id
    for d in range(num_docs):
        doc = []
        for _ in range(rng.randint(1, max_sentences)):
            n = rng.randint(1, 30)
            ids = list(range(next_id, next_id + n))
            for i in ids:
                doc_of[i] = d
            next_id += n
            doc.append(ids)
        docs.append(doc)
    return pretraining.tokenized_chunk(docs), doc_of, next_id


def config(vocab_size=None, **kw):
    vocab = tiny_vocab()
    if vocab_size is not None:  # a large id space without "##" tokens (unique-id corpora)
        vocab = dict(vocab)
        for i in range(len(vocab), vocab_size):
            vocab[f"t{i}"] = i
    base = dict(max_seq_length=64, max_predictions_per_seq=12, dupe_factor=2, random_seed=7, batch_size=256)
    base.update(kw)
    return pretraining.InstanceConfig(**base, **pretraining.vocab_info(vocab))


def restore_tokens(features):
    """input_ids with the masked positions put back to their labels (the text before masking)."""
    tokens = features["input_ids"].copy()
    rows = np.arange(len(tokens))[:, None]
    w = features["masked_lm_weights"] > 0
    pos = features["masked_lm_positions"]
    tokens[np.broadcast_to(rows, pos.shape)[w], pos[w]] = features["masked_lm_ids"][w]
    return tokens


# ---- The original algorithm (google-research/bert create_pretraining_data.py), over id lists: the test oracle ----
def original_instances(documents, max_seq_length, short_seq_prob, rng):
    """documents: list of list of sentences (lists of ids) -> list of (tokens_a, tokens_b, is_random_next)."""
    out = []
    for document_index in range(len(documents)):
        document = documents[document_index]
        max_num_tokens = max_seq_length - 3
        target_seq_length = max_num_tokens
        if rng.random() < short_seq_prob:
            target_seq_length = rng.randint(2, max_num_tokens)
        current_chunk, current_length, i = [], 0, 0
        while i < len(document):
            segment = document[i]
            current_chunk.append(segment)
            current_length += len(segment)
            if i == len(document) - 1 or current_length >= target_seq_length:
                if current_chunk:
                    a_end = 1
                    if len(current_chunk) >= 2:
                        a_end = rng.randint(1, len(current_chunk) - 1)
                    tokens_a = [t for j in range(a_end) for t in current_chunk[j]]
                    tokens_b = []
                    if len(current_chunk) == 1 or rng.random() < 0.5:
                        is_random_next = True
                        target_b_length = target_seq_length - len(tokens_a)
                        for _ in range(10):
                            random_document_index = rng.randint(0, len(documents) - 1)
                            if random_document_index != document_index:
                                break
                        random_document = documents[random_document_index]
                        random_start = rng.randint(0, len(random_document) - 1)
                        for j in range(random_start, len(random_document)):
                            tokens_b.extend(random_document[j])
                            if len(tokens_b) >= target_b_length:
                                break
                        i -= len(current_chunk) - a_end
                    else:
                        is_random_next = False
                        for j in range(a_end, len(current_chunk)):
                            tokens_b.extend(current_chunk[j])
                    original_truncate(tokens_a, tokens_b, max_num_tokens, rng)
                    out.append((tokens_a, tokens_b, is_random_next))
                current_chunk, current_length = [], 0
            i += 1
    return out


def original_truncate(tokens_a, tokens_b, max_num_tokens, rng):
    while True:
        if len(tokens_a) + len(tokens_b) <= max_num_tokens:
            break
        trunc_tokens = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
        if rng.random() < 0.5:
            del trunc_tokens[0]
        else:
            trunc_tokens.pop()


def chunk_documents(chunk):
    ids = chunk.ids.tolist()
    so, ds = chunk.sent_off.tolist(), chunk.doc_sent.tolist()
    return [[ids[so[s]:so[s + 1]] for s in range(ds[d], ds[d + 1])] for d in range(len(ds) - 1)]
