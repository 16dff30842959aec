"""The TensorFlow half of FullTokenizer's fast path: tensorflow-text FastWordpieceTokenizer functions over a vocabulary.

Kept apart from `tokenization/__init__.py` so that importing the tokenizer does not import TensorFlow (processes that
fork numpy workers, e.g. create_pretraining_data.py, and light scripts import it first).
"""
import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text


def build_ops(vocab, do_lower_case, max_input_chars_per_word):
    """vocab (token -> id) -> (run_ascii, run_words, pos_to_id, remap).

    run_ascii(texts) tokenizes ASCII texts end to end (lower-casing in-graph when `do_lower_case`), run_words(words)
    looks up words already split and normalised; both return (flat token positions, row lengths) as numpy arrays.
    `pos_to_id` maps a token's position in the vocabulary list to its id, `remap` says whether that is needed.
    """
    # Ids follow the file's line numbers (original load_vocab); a duplicated token keeps its last id there.
    # FastWordpieceTokenizer numbers tokens by list position, so map positions back to ids when they differ.
    tokens = list(vocab)
    ids = np.asarray([vocab[t] for t in tokens], dtype=np.int32)
    common = dict(token_out_type=tf.int32, unknown_token="[UNK]", suffix_indicator="##",
                  support_detokenization=False)
    # ASCII: one byte per character, so the byte limit is the original's character limit. The word path gets
    # words already cut to the character limit in Python; its byte limit only has to let them all through.
    e2e = tf_text.FastWordpieceTokenizer(tokens, no_pretokenization=False,
                                         max_bytes_per_word=max_input_chars_per_word, **common)
    words = tf_text.FastWordpieceTokenizer(tokens, no_pretokenization=True,
                                           max_bytes_per_word=4 * max_input_chars_per_word, **common)
    spec = [tf.TensorSpec([None], tf.string)]

    @tf.function(input_signature=spec)
    def ascii_fn(x):
        r = e2e.tokenize(tf.strings.lower(x) if do_lower_case else x)
        return r.flat_values, r.row_lengths()

    @tf.function(input_signature=spec)
    def words_fn(x):
        r = words.tokenize(x)
        return r.flat_values, r.row_lengths()

    def run(fn, x):
        flat, rl = fn(tf.constant(x, dtype=tf.string))
        return flat.numpy(), rl.numpy()

    return (lambda x: run(ascii_fn, x), lambda x: run(words_fn, x), ids, bool(np.any(ids != np.arange(len(ids)))))
