"""Pretraining instances (BERT MLM + NSP, ALBERT SOP / n-gram masking) built with numpy on token-id arrays.

This module never imports TensorFlow: worker processes only need numpy. The algorithm is the original
`create_pretraining_data.py` one (create_instances_from_document, truncate_seq_pair, create_masked_lm_predictions),
restated over id arrays:

- A document is a run of sentences (token-id ranges in one flat array). Per document a target length is drawn
  (`short_seq_prob`), sentences are gathered into a chunk until it reaches the target, the chunk is split at a random
  sentence into segment A and B.
- NSP (default): with probability 1/2, or always when the chunk has a single sentence, B is replaced by text from a
  random OTHER document of the same input chunk (label 1) and the unused sentences are put back.
- SOP (`sentence_order_prediction`): A and B are consecutive text of the same document; with probability 1/2 they are
  swapped (label 1). A chunk of a single sentence is split inside the sentence (at a random token); a one-token
  sentence gives no instance.
- truncate_seq_pair: trim the longer segment one token at a time, from the front or the back at random. Computed in
  closed form: the per-segment trim counts are deterministic, the front/back split is Binomial(n, 1/2).
- Masking: num_to_predict = min(max_predictions_per_seq, max(1, round(len(tokens) * masked_lm_prob))); candidate
  units (tokens, or whole words when `do_whole_word_mask` / n-grams, "##" pieces join the previous token) are taken
  in random order while they fit; each chosen token becomes [MASK] 80%, itself 10%, a random vocab token 10%.
  N-grams (`max_ngram_size` > 1, ALBERT): always over whole words; per start word (in random order) an n in 1..N is
  drawn with p(n) proportional to 1/n, shortened while it would exceed num_to_predict, skipped when it overlaps
  already-masked words. As in ALBERT, an n-gram runs over consecutive candidate words, so it may span the [SEP].

Randomness: the structure of each (input chunk, dupe) comes from `random.Random` seeded from (random_seed, chunk,
dupe); truncation, masking and the in-chunk shuffle from a numpy Generator seeded from (random_seed, chunk). A chunk's
result therefore does not depend on which process builds it. The random next document is drawn within the chunk, and
instances are shuffled within the chunk (the original shuffles the whole corpus in memory). The draws differ from the
original script's (not byte-compatible with it); the distributions are the same (tests/data/test_pretraining.py).
"""
import bisect
import collections
import dataclasses
import os
import random

import numpy as np

import bertkit_errors
from tokenization import warn_duplicate_tokens

from data import pretraining_records

SPECIAL_TOKENS = ("[CLS]", "[SEP]", "[MASK]")
_SHUFFLE_STREAM = 1 << 30


@dataclasses.dataclass
class InstanceConfig:
    max_seq_length: int = 128
    max_predictions_per_seq: int = 20
    masked_lm_prob: float = 0.15
    short_seq_prob: float = 0.1
    dupe_factor: int = 10
    random_seed: int = 12345
    do_whole_word_mask: bool = False
    max_ngram_size: int = 1
    sentence_order_prediction: bool = False
    # vocabulary facts (VocabInfo)
    cls_id: int = 101
    sep_id: int = 102
    mask_id: int = 103
    vocab_ids: np.ndarray = None      # distinct ids a random replacement is drawn from
    is_subword: np.ndarray = None     # bool[max id + 1]: token starts with "##"
    batch_size: int = 2048            # rows vectorised together


def read_vocab(vocab_file, flag="vocab_file"):
    """Vocab file -> OrderedDict token -> id (original semantics: id = line number, each line stripped), without
    TensorFlow. UserError naming the flag when missing, not UTF-8, or lacking [UNK] [CLS] [SEP] [MASK]."""
    path = os.fspath(vocab_file or "")
    if not path:
        raise bertkit_errors.UserError(f"--{flag}: required")
    if not os.path.isfile(path):
        raise bertkit_errors.UserError(f"--{flag}={path}: vocab file not found")
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise bertkit_errors.UserError(f"--{flag}={path}:{line}: vocab file is not valid UTF-8") from None
    vocab = collections.OrderedDict()
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for index, line in enumerate(lines):
        vocab[line.strip()] = index
    warn_duplicate_tokens(path, vocab, lines)
    missing = [t for t in ("[UNK]",) + SPECIAL_TOKENS if t not in vocab]
    if missing:
        raise bertkit_errors.UserError(
            f"--{flag}={path}: vocab file lacks the special token(s) {' '.join(missing)}")
    return vocab


def vocab_info(vocab):
    """OrderedDict token -> id  ->  dict(cls_id, sep_id, mask_id, vocab_ids, is_subword) for InstanceConfig."""
    size = max(vocab.values()) + 1
    is_subword = np.zeros(size, dtype=bool)
    for token, i in vocab.items():
        if token.startswith("##"):
            is_subword[i] = True
    return {"cls_id": vocab["[CLS]"], "sep_id": vocab["[SEP]"], "mask_id": vocab["[MASK]"],
            "vocab_ids": np.array(sorted(set(vocab.values())), dtype=np.int64), "is_subword": is_subword}


# ---------------------------------------------------------------------------------------------------------------
# Tokenized input chunks
# ---------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class TokenizedChunk:
    """Documents of one input chunk: `ids` all tokens; sentence s = ids[sent_off[s]:sent_off[s+1]];
    document d = sentences doc_sent[d]:doc_sent[d+1]. No empty sentence, no empty document."""
    ids: np.ndarray       # int32 [N]
    sent_off: np.ndarray  # int64 [S+1]
    doc_sent: np.ndarray  # int64 [D+1]

    @property
    def num_documents(self):
        return len(self.doc_sent) - 1


def tokenized_chunk(documents_ids):
    """[[id array per sentence] per document] -> TokenizedChunk (empty sentences and documents dropped)."""
    arrays, doc_sent, n_sent = [], [0], 0
    for doc in documents_ids:
        kept = [np.asarray(s, dtype=np.int32) for s in doc if len(s)]
        if kept:
            arrays.extend(kept)
            n_sent += len(kept)
            doc_sent.append(n_sent)
    lens = np.fromiter((len(a) for a in arrays), dtype=np.int64, count=len(arrays))
    sent_off = np.zeros(len(arrays) + 1, dtype=np.int64)
    np.cumsum(lens, out=sent_off[1:])
    ids = np.concatenate(arrays).astype(np.int32, copy=False) if arrays else np.zeros(0, np.int32)
    return TokenizedChunk(ids=ids, sent_off=sent_off, doc_sent=np.asarray(doc_sent, dtype=np.int64))


def tokenize_documents(documents, encode_batch):
    """[[sentence str]] -> TokenizedChunk, with one encode_batch call for the whole chunk."""
    flat = [s for doc in documents for s in doc]
    encoded = encode_batch(flat) if flat else []
    out, k = [], 0
    for doc in documents:
        out.append(encoded[k:k + len(doc)])
        k += len(doc)
    return tokenized_chunk(out)


# ---------------------------------------------------------------------------------------------------------------
# Instance structure: (a_start, a_end, b_start, b_end, label) token ranges into chunk.ids
# ---------------------------------------------------------------------------------------------------------------
def _seed(*parts):
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, np.uint64)[0])


def instance_structure(chunk, cfg, rng):
    """One pass (one dupe) of create_instances_from_document over every document -> int64 [n, 5] rows
    (a_start, a_end, b_start, b_end, label), untruncated, in document order."""
    sent_off = chunk.sent_off.tolist()
    doc_sent = chunk.doc_sent.tolist()
    n_docs = len(doc_sent) - 1
    max_num_tokens = cfg.max_seq_length - 3
    short_seq_prob = cfg.short_seq_prob
    sop = cfg.sentence_order_prediction
    rand = rng.random

    def randint(lo, hi):  # uniform integer in [lo, hi], like random.randint but ~10x cheaper
        return lo + int(rand() * (hi - lo + 1))

    out = []
    append = out.append
    for doc in range(n_docs):
        s_first, s_end = doc_sent[doc], doc_sent[doc + 1]
        target = max_num_tokens
        if rand() < short_seq_prob:
            target = randint(2, max_num_tokens)
        chunk_start = s_first
        while chunk_start < s_end:
            # i: the first sentence at which the chunk chunk_start..i reaches the target length, or the last one
            i = bisect.bisect_left(sent_off, sent_off[chunk_start] + target, chunk_start + 1, s_end) - 1
            n_seg = i - chunk_start + 1
            a_end_sent = chunk_start + (randint(1, n_seg - 1) if n_seg >= 2 else 1)
            a0, a1 = sent_off[chunk_start], sent_off[a_end_sent]
            if sop:
                if n_seg == 1:
                    if a1 - a0 >= 2:
                        cut = a0 + randint(1, a1 - a0 - 1)
                        b0, b1, a1 = cut, a1, cut
                    else:
                        b0 = -1
                else:
                    b0, b1 = a1, sent_off[i + 1]
                if b0 >= 0:
                    if rand() < 0.5:
                        append((b0, b1, a0, a1, 1))
                    else:
                        append((a0, a1, b0, b1, 0))
            elif n_seg == 1 or rand() < 0.5:
                target_b = target - (a1 - a0)
                for _ in range(10):
                    r = randint(0, n_docs - 1)
                    if r != doc:
                        break
                r_first, r_end = doc_sent[r], doc_sent[r + 1]
                rs = randint(r_first, r_end - 1)
                b0 = sent_off[rs]
                # first sentence end at which B reaches target_b (at least one sentence), else the document end
                k = bisect.bisect_left(sent_off, b0 + target_b, rs + 1, r_end)
                append((a0, a1, b0, sent_off[k], 1))
                i -= n_seg - (a_end_sent - chunk_start)  # put the unused sentences back
            else:
                append((a0, a1, a1, sent_off[i + 1], 0))
            chunk_start = i + 1
    return np.asarray(out, dtype=np.int64).reshape(-1, 5)


def truncation_counts(la, lb, max_num_tokens):
    """How many tokens truncate_seq_pair removes from A and from B (it trims the longer one, B on ties)."""
    la = np.asarray(la, np.int64)
    lb = np.asarray(lb, np.int64)
    excess = np.maximum(la + lb - max_num_tokens, 0)
    from_longer = np.minimum(excess, np.abs(la - lb))
    rest = excess - from_longer
    a_longer = la > lb
    cut_a = np.where(a_longer, from_longer, 0) + rest // 2
    cut_b = np.where(a_longer, 0, from_longer) + (rest + 1) // 2
    return cut_a, cut_b


def truncate(rows, max_num_tokens, np_rng):
    """Apply truncate_seq_pair to structure rows in place: the front/back split of each side is Binomial(n, 1/2)."""
    la = rows[:, 1] - rows[:, 0]
    lb = rows[:, 3] - rows[:, 2]
    cut_a, cut_b = truncation_counts(la, lb, max_num_tokens)
    front_a = np_rng.binomial(cut_a, 0.5)
    front_b = np_rng.binomial(cut_b, 0.5)
    rows[:, 0] += front_a
    rows[:, 1] -= cut_a - front_a
    rows[:, 2] += front_b
    rows[:, 3] -= cut_b - front_b
    return rows


# ---------------------------------------------------------------------------------------------------------------
# Vectorised sequences and masking
# ---------------------------------------------------------------------------------------------------------------
def build_sequences(ids, rows, cfg):
    """Rows (a0, a1, b0, b1, label) -> tokens int32, input_mask bool, segment_ids bool [B, T] for
    [CLS] A [SEP] B [SEP] + padding, and the sequence lengths [B]."""
    t = cfg.max_seq_length
    r32 = rows[:, :4].astype(np.int32)
    a0, a1, b0, b1 = (r32[:, j:j + 1] for j in range(4))
    la, lb = a1 - a0, b1 - b0
    cols = np.arange(t, dtype=np.int32)[None, :]
    in_a = cols <= la
    src = np.where(in_a, a0 - 1, b0 - 2 - la)
    src += cols
    n = 3 + la + lb
    input_mask = cols < n
    np.clip(src, 0, max(len(ids) - 1, 0), out=src)
    tokens = np.take(ids, src)
    tokens *= input_mask
    rr = np.arange(len(rows))
    tokens[:, 0] = cfg.cls_id
    tokens[rr, 1 + la[:, 0]] = cfg.sep_id
    tokens[rr, n[:, 0] - 1] = cfg.sep_id
    segment_ids = ~in_a
    segment_ids &= input_mask
    segment_ids[rr, 1 + la[:, 0]] = False  # the first [SEP] belongs to segment A
    return tokens, input_mask, segment_ids, n[:, 0].astype(np.int64)


def _word_units(tokens, cand, cfg):
    """Whole-word units: word_start [B,T], word index per token [B,T], word lengths [B,W], words per row [B]."""
    sub = cfg.is_subword[np.minimum(tokens, len(cfg.is_subword) - 1)] & cand
    seen_before = (np.cumsum(cand, axis=1) - cand) > 0
    word_start = cand & ~(sub & seen_before)
    wid = np.cumsum(word_start, axis=1) - 1
    n_words = word_start.sum(axis=1)
    w = max(int(n_words.max()) if len(n_words) else 0, 1)
    b = tokens.shape[0]
    flat = (np.arange(b)[:, None] * w + np.maximum(wid, 0))[cand]
    word_len = np.bincount(flat, minlength=b * w).reshape(b, w)
    return wid, word_len, n_words


def ngram_cdf(nmax):
    """cdf[a, j] = P(n <= j + 1) when a words are available, p(n) proportional to 1/n over n = 1..min(a, nmax)."""
    pvals = 1.0 / np.arange(1, nmax + 1)
    cdf = np.ones((nmax + 1, nmax))
    for a in range(1, nmax + 1):
        cdf[a, :a] = np.cumsum(pvals[:a]) / pvals[:a].sum()
    return cdf


def sample_ngram_sizes(u, avail, nmax, cdf=None):
    """n-gram sizes for uniforms u [B] and available words avail [B] (1 <= avail): n in 1..min(avail, nmax)."""
    cdf = ngram_cdf(nmax) if cdf is None else cdf
    avail = np.clip(avail, 1, nmax)
    n = 1 + (u[:, None] > cdf[avail, :nmax - 1]).sum(axis=1)
    return np.minimum(n, avail)


def positions_from_mask(chosen, p):
    """bool [B, T] with at most p True per row -> (positions int64 [B, p] ascending, zero-padded; valid bool)."""
    b = chosen.shape[0]
    r, c = np.nonzero(chosen)
    per_row = chosen.sum(axis=1)
    starts = np.zeros(b, dtype=np.int64)
    np.cumsum(per_row[:-1], out=starts[1:])
    slot = np.arange(len(r)) - starts[r]
    positions = np.zeros((b, p), dtype=np.int64)
    positions[r, slot] = c
    return positions, np.arange(p)[None, :] < per_row[:, None]


def _num_to_predict(n_tokens, cfg):
    return np.minimum(cfg.max_predictions_per_seq,
                      np.maximum(1, np.round(n_tokens * cfg.masked_lm_prob).astype(np.int64)))


def _random_token_subset(cand, k, p, rng):
    """Single-token units: a uniform random subset of min(k, #candidates) candidates per row ->
    (positions int64 [B, p] ascending, zero-padded; valid bool [B, p])."""
    b, t = cand.shape
    keys = rng.random((b, t), dtype=np.float32)
    keys[~cand] = 2.0
    q = min(p, t)
    part = np.argpartition(keys, q - 1, axis=1)[:, :q] if q < t else np.argsort(keys, axis=1)
    k = np.minimum(k, cand.sum(axis=1))
    # the q smallest keys, in key order: the first k of them are the chosen candidates
    order = np.take_along_axis(part, np.argsort(np.take_along_axis(keys, part, 1), axis=1), 1)
    valid = np.arange(q)[None, :] < k[:, None]
    positions = np.where(valid, order, t)
    positions.sort(axis=1)
    positions[~valid] = 0
    if q < p:
        positions = np.pad(positions, ((0, 0), (0, p - q)))
        valid = np.pad(valid, ((0, 0), (0, p - q)))
    return positions.astype(np.int64), valid


def choose_masked_positions(tokens, cand, n_tokens, cfg, rng):
    """The positions create_masked_lm_predictions predicts: (positions int64 [B, P] ascending and zero-padded,
    valid bool [B, P])."""
    if not cfg.do_whole_word_mask and cfg.max_ngram_size <= 1:
        return _random_token_subset(cand, _num_to_predict(n_tokens, cfg), cfg.max_predictions_per_seq, rng)
    return positions_from_mask(choose_masked_mask(tokens, cand, n_tokens, cfg, rng), cfg.max_predictions_per_seq)


def choose_masked_mask(tokens, cand, n_tokens, cfg, rng):
    """bool [B, T]: the positions create_masked_lm_predictions predicts."""
    b, t = tokens.shape
    rows = np.arange(b)
    k = _num_to_predict(n_tokens, cfg)
    if not cfg.do_whole_word_mask and cfg.max_ngram_size <= 1:
        positions, valid = _random_token_subset(cand, k, cfg.max_predictions_per_seq, rng)
        chosen = np.zeros((b, t), dtype=bool)
        chosen[np.broadcast_to(rows[:, None], positions.shape)[valid], positions[valid]] = True
        return chosen
    wid, word_len, n_words = _word_units(tokens, cand, cfg)
    w = word_len.shape[1]
    keys = rng.random((b, w))
    keys[np.arange(w)[None, :] >= n_words[:, None]] = 2.0
    order = np.argsort(keys, axis=1)
    taken = np.zeros((b, w), dtype=bool)
    count = np.zeros(b, dtype=np.int64)
    if cfg.max_ngram_size <= 1:
        for r in range(w):
            live = (r < n_words) & (count < k)
            if not live.any():
                break
            wr = order[:, r]
            length = word_len[rows, wr]
            ok = live & (count + length <= k)
            count += np.where(ok, length, 0)
            taken[rows[ok], wr[ok]] = True
    else:
        nmax = cfg.max_ngram_size
        cdf = ngram_cdf(nmax)
        cum_len = np.zeros((b, w + 1), dtype=np.int64)
        np.cumsum(word_len, axis=1, out=cum_len[:, 1:])
        u = rng.random((b, w))
        for r in range(w):
            live = (r < n_words) & (count < k)
            if not live.any():
                break
            ws = order[:, r]
            n = sample_ngram_sizes(u[:, r], n_words - ws, nmax, cdf)
            remaining = k - count
            start_len = cum_len[rows, ws]
            n_fit = np.zeros(b, dtype=np.int64)
            for m in range(1, nmax + 1):
                end = np.minimum(ws + m, w)
                n_fit += (m <= n) & (cum_len[rows, end] - start_len <= remaining)
            covered = np.zeros(b, dtype=bool)
            for m in range(nmax):
                covered |= (m < n_fit) & taken[rows, np.minimum(ws + m, w - 1)]
            ok = live & (n_fit > 0) & ~covered
            span = cum_len[rows, np.minimum(ws + n_fit, w)] - start_len
            count += np.where(ok, span, 0)
            for m in range(nmax):
                sel = ok & (m < n_fit)
                taken[rows[sel], ws[sel] + m] = True
    return cand & taken[rows[:, None], np.maximum(wid, 0)]


def apply_masks(tokens, positions, valid, cfg, rng):
    """80% [MASK], 10% unchanged, 10% random vocab token at the valid positions (tokens changed in place).
    Returns labels int [B, P] (0 where not valid) and kinds of the valid positions in row-major order
    (0 = [MASK], 1 = kept, 2 = random)."""
    rows = np.broadcast_to(np.arange(len(tokens))[:, None], positions.shape)
    labels = tokens[rows, positions]
    labels *= valid
    r, pos = rows[valid], positions[valid]
    orig = labels[valid]
    n = len(orig)
    u1 = rng.random(n)
    u2 = rng.random(n)
    rand_ids = cfg.vocab_ids[rng.integers(0, len(cfg.vocab_ids), n)]
    kinds = np.where(u1 < 0.8, 0, np.where(u2 < 0.5, 1, 2))
    tokens[r, pos] = np.where(kinds == 0, cfg.mask_id, np.where(kinds == 1, orig, rand_ids))
    return labels, kinds


def build_features(ids, rows, cfg, rng):
    """Truncated structure rows -> dict of int64/float32 feature arrays [B, ...] and statistics."""
    tokens, input_mask, segment_ids, n_tokens = build_sequences(ids, rows, cfg)
    cand = input_mask.copy()
    cand[:, 0] = False
    rr = np.arange(len(rows))
    la = rows[:, 1] - rows[:, 0]
    cand[rr, 1 + la] = False
    cand[rr, n_tokens - 1] = False
    positions, valid = choose_masked_positions(tokens, cand, n_tokens, cfg, rng)
    masked_ids, kinds = apply_masks(tokens, positions, valid, cfg, rng)
    weights = valid.astype(np.float32)
    features = {
        "input_ids": tokens,
        "input_mask": input_mask.view(np.uint8),
        "segment_ids": segment_ids.view(np.uint8),
        "masked_lm_positions": positions,
        "masked_lm_ids": masked_ids,
        "masked_lm_weights": weights,
        "next_sentence_labels": rows[:, 4:5].copy(),
    }
    stats = {"instances": len(rows), "tokens": int(n_tokens.sum()), "candidate_tokens": int(cand.sum()),
             "masked": int(len(kinds)), "masked_as_mask": int((kinds == 0).sum()),
             "masked_kept": int((kinds == 1).sum()), "masked_random": int((kinds == 2).sum()),
             "label_1": int(rows[:, 4].sum())}
    return features, stats


def chunk_rows(chunk, chunk_index, cfg):
    """All instance rows of one input chunk over every dupe, truncated and shuffled; plus the numpy Generator."""
    parts = []
    for dupe in range(cfg.dupe_factor):
        rng = random.Random(_seed(cfg.random_seed, chunk_index, dupe))
        parts.append(instance_structure(chunk, cfg, rng))
    rows = np.concatenate(parts) if parts else np.zeros((0, 5), np.int64)
    np_rng = np.random.default_rng(np.random.SeedSequence(
        [cfg.random_seed & 0xFFFFFFFF, chunk_index & 0xFFFFFFFF, _SHUFFLE_STREAM]))
    rows = rows[np_rng.permutation(len(rows))]
    truncate(rows, cfg.max_seq_length - 3, np_rng)
    return rows, np_rng


def merge_stats(total, stats):
    for key, value in stats.items():
        total[key] = total.get(key, 0) + value
    return total


def build_chunk_records(chunk, chunk_index, cfg):
    """One input chunk -> (serialized tf.train.Example bytes concatenated, int64 record end offsets, stats)."""
    rows, np_rng = chunk_rows(chunk, chunk_index, cfg)
    blobs, ends, stats, base = [], [], {"instances": 0}, 0
    for start in range(0, len(rows), cfg.batch_size):
        features, st = build_features(chunk.ids, rows[start:start + cfg.batch_size], cfg, np_rng)
        blob, lengths = pretraining_records.serialize_pretraining(features)
        blobs.append(blob)
        e = np.cumsum(lengths) + base
        ends.append(e)
        base = int(e[-1])
        merge_stats(stats, st)
    blob = b"".join(b.tobytes() for b in blobs)
    ends = np.concatenate(ends) if ends else np.zeros(0, np.int64)
    stats["documents"] = chunk.num_documents
    stats["sentences"] = len(chunk.sent_off) - 1
    return blob, ends, stats
