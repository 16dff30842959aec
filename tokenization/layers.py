"""BertTextPacker: raw text -> BERT inputs, in-graph (tf.function / SavedModel safe).

Tokenizes with the same algorithm as tokenization.reference (the original Google BERT tokenizer), expressed as
TensorFlow ops: RE2 character classes and a per-character lower-casing table generated from the reference's own
predicates (tokenization._charmap), Python's Final_Sigma rule as a regex, then tensorflow-text's WordpieceTokenizer on
a vocabulary lookup table initialised from the vocab file (a tracked asset: tf.saved_model.save copies the file).
Packing is `[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]`, truncated exactly like the original `_truncate_seq_pair`
(drop from the end of the longer segment, ties drop from b), which equals keras-hub MultiSegmentPacker's
"round_robin" strategy; it is implemented here directly to keep the layer free of keras-hub.

Known limitation (lower-casing only): NFD reordering of non-Mn combining marks (e.g. U+1D165 musical symbols) is not
reproduced in-graph; FullTokenizer handles those texts with the reference.
"""
import os

import keras
import tensorflow as tf
import tensorflow_text as tf_text

import bertkit_errors
from tokenization import MAX_INPUT_CHARS_PER_WORD, _charmap, check_max_input_chars, load_vocab

_SENTINEL = "\uffff\uffff"


class BertTextPacker(keras.layers.Layer):
    """tf.string [B] (or a pair of them) -> dict input_ids, input_mask, segment_ids, int32 [B, max_seq_length]."""

    def __init__(self, vocab_file, do_lower_case=True, max_seq_length=128,
                 max_input_chars_per_word=MAX_INPUT_CHARS_PER_WORD, **kwargs):
        super().__init__(trainable=False, **kwargs)
        self.vocab_file = os.fspath(vocab_file)
        self.do_lower_case = bool(do_lower_case)
        self.max_seq_length = int(max_seq_length)
        self.max_input_chars_per_word = check_max_input_chars(max_input_chars_per_word)
        if self.max_seq_length < 3:
            raise bertkit_errors.UserError(f"max_seq_length={max_seq_length}: must be at least 3")
        vocab = load_vocab(self.vocab_file)  # validates the file, gives the special ids
        self.cls_id = vocab["[CLS]"]
        self.sep_id = vocab["[SEP]"]
        self.pad_id = vocab.get("[PAD]", 0)
        t = _charmap.graph_tables(self.do_lower_case)
        self._remove_re = _charmap.re2_class(t["remove"])
        self._space_re = _charmap.re2_class(t["space"])
        self._cjk_re = _charmap.re2_class(t["cjk"])
        self._punct_re = _charmap.re2_class(t["punct"])
        if self.do_lower_case:
            cased = _charmap.re2_class(t["cased"])
            ign = _charmap.re2_class(t["ignorable"])
            other = _charmap.re2_class(t["cased"] + t["ignorable"], negate=True)
            self._sigma_re = f"({cased}{ign}*)\u03a3({ign}*)({other}|$)"
            self._lower_table = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(tf.constant(t["lower_keys"]), tf.constant(t["lower_vals"])),
                default_value=_SENTINEL)
        # Vocabulary as a table initialised from the file: the file becomes a SavedModel asset.
        self._vocab_table = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(self.vocab_file, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE,
                                          tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER),
            default_value=-1)
        self._wordpiece = tf_text.WordpieceTokenizer(
            # Words over the character limit are already [UNK] (counted in characters in tokenize()); the byte limit
            # (UTF-8: at most 4 bytes a character) only has to let every shorter word through.
            self._vocab_table, suffix_indicator="##", max_bytes_per_word=4 * self.max_input_chars_per_word,
            token_out_type=tf.int64, unknown_token="[UNK]")

    def get_config(self):
        config = super().get_config()
        config.update(vocab_file=self.vocab_file, do_lower_case=self.do_lower_case,
                      max_seq_length=self.max_seq_length, max_input_chars_per_word=self.max_input_chars_per_word)
        return config

    # ---- tokenization -------------------------------------------------------------------------------------------
    def basic_tokenize(self, text):
        """tf.string [B] -> RaggedTensor [B, (words)] of the original BasicTokenizer's tokens."""
        x = tf.strings.regex_replace(text, self._remove_re, "")
        x = tf.strings.regex_replace(x, self._space_re, " ")
        x = tf.strings.regex_replace(x, self._cjk_re, " \\0 ")
        if self.do_lower_case:
            x = tf.strings.regex_replace(x, self._sigma_re, "\\1\u03c2\\2\\3")
            chars = tf.strings.unicode_split(x, "UTF-8")
            mapped = self._lower_table.lookup(chars)
            mapped = tf.where(tf.equal(mapped, _SENTINEL), chars, mapped)
            x = tf.strings.reduce_join(mapped, axis=-1)
        x = tf.strings.regex_replace(x, self._punct_re, " \\0 ")
        return tf.strings.split(x)

    def tokenize(self, text):
        """tf.string [B] -> RaggedTensor int32 [B, (tokens)] of wordpiece ids."""
        text = tf.convert_to_tensor(text, dtype=tf.string)
        words = self.basic_tokenize(tf.reshape(text, [-1]))
        too_long = tf.strings.length(words.flat_values, unit="UTF8_CHAR") > self.max_input_chars_per_word
        words = words.with_flat_values(tf.where(too_long, "[UNK]", words.flat_values))
        ids = self._wordpiece.tokenize(words)  # [B, (words), (pieces)]
        return tf.cast(ids.merge_dims(1, 2), tf.int32)

    # ---- packing ------------------------------------------------------------------------------------------------
    @staticmethod
    def _keep_first(ragged, n):
        positions = tf.ragged.range(ragged.row_lengths())
        return tf.ragged.boolean_mask(ragged, positions < tf.cast(n, positions.dtype)[:, None])

    def call(self, inputs):
        if isinstance(inputs, (tuple, list)):
            if len(inputs) == 1:
                inputs = inputs[0]
            elif len(inputs) != 2:
                raise ValueError(f"BertTextPacker takes one or two text tensors, got {len(inputs)}")
        T = self.max_seq_length
        if isinstance(inputs, (tuple, list)):
            a = self.tokenize(inputs[0])
            b = self.tokenize(inputs[1])
            la = a.row_lengths()
            lb = b.row_lengths()
            budget = tf.cast(T - 3, la.dtype)
            # Closed form of the original _truncate_seq_pair (pop from the longer, ties pop from b).
            half_up = (budget + 1) // 2
            new_a = tf.where(la + lb <= budget, la, tf.minimum(la, tf.maximum(budget - lb, half_up)))
            new_b = tf.where(la + lb <= budget, lb, budget - new_a)
            a = self._keep_first(a, new_a)
            b = self._keep_first(b, new_b)
            batch = tf.shape(a.row_lengths())[0]
            cls = tf.fill([batch, 1], self.cls_id)
            sep = tf.fill([batch, 1], self.sep_id)
            cls = tf.RaggedTensor.from_tensor(cls)
            sep = tf.RaggedTensor.from_tensor(sep)
            ids = tf.concat([cls, a, sep, b, sep], axis=1)
            seg = tf.concat([tf.zeros_like(cls), tf.zeros_like(a), tf.zeros_like(sep), tf.ones_like(b),
                             tf.ones_like(sep)], axis=1)
        else:
            a = self.tokenize(inputs)
            a = self._keep_first(a, tf.fill(tf.shape(a.row_lengths()), tf.cast(T - 2, tf.int64)))
            batch = tf.shape(a.row_lengths())[0]
            cls = tf.RaggedTensor.from_tensor(tf.fill([batch, 1], self.cls_id))
            sep = tf.RaggedTensor.from_tensor(tf.fill([batch, 1], self.sep_id))
            ids = tf.concat([cls, a, sep], axis=1)
            seg = tf.zeros_like(ids)
        input_ids = ids.to_tensor(default_value=self.pad_id, shape=[None, T])
        input_mask = tf.ones_like(ids).to_tensor(default_value=0, shape=[None, T])
        segment_ids = seg.to_tensor(default_value=0, shape=[None, T])
        return {"input_ids": input_ids, "input_mask": input_mask, "segment_ids": segment_ids}

    def compute_output_spec(self, inputs):
        first = inputs[0] if isinstance(inputs, (tuple, list)) else inputs
        batch = first.shape[0] if first.shape.rank else None
        spec = keras.KerasTensor((batch, self.max_seq_length), dtype="int32")
        return {"input_ids": spec, "input_mask": spec, "segment_ids": spec}
