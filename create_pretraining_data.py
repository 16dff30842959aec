"""Create masked LM / next sentence (or sentence order) prediction TFRecords from a text corpus.

Input: one sentence per line, blank line between documents, UTF-8. Same flags as Google's original script, plus
--sentence_order_prediction, --max_ngram_size (ALBERT), --num_workers, --gzip_compress, --num_output_shards and
--docs_per_chunk. Streaming, deterministic for a given seed whatever --num_workers, atomic outputs, and a JSON summary
`<output stem>.summary.json` beside the output. Logic: data/pretraining.py, data/pretraining_writer.py.
"""
import os
import sys
import time

_T_START = time.time()

from absl import flags  # noqa: E402

import bertkit_errors  # noqa: E402
import bertkit_io  # noqa: E402

FLAGS = flags.FLAGS

flags.DEFINE_string("input_file", None, "Input raw text file (or comma-separated list of files / globs).")
flags.DEFINE_string("output_file", None, "Output TF example file (or comma-separated list of files); with "
                    "--num_output_shards, the name the shard names are derived from.")
flags.DEFINE_string("vocab_file", None, "The vocabulary file that the BERT model was trained on.")
flags.DEFINE_bool("do_lower_case", True, "Whether to lower case the input text. True for uncased models.")
flags.DEFINE_bool("do_whole_word_mask", False, "Whether to use whole word masking rather than per-WordPiece masking.")
flags.DEFINE_integer("max_seq_length", 128, "Maximum sequence length.")
flags.DEFINE_integer("max_predictions_per_seq", 20, "Maximum number of masked LM predictions per sequence.")
flags.DEFINE_integer("random_seed", 12345, "Random seed for data generation.")
flags.DEFINE_integer("dupe_factor", 10, "Number of times to duplicate the input data (with different masks).")
flags.DEFINE_float("masked_lm_prob", 0.15, "Masked LM probability.")
flags.DEFINE_float("short_seq_prob", 0.1,
                   "Probability of creating sequences which are shorter than the maximum length.")
flags.DEFINE_bool("sentence_order_prediction", False,
                  "ALBERT SOP instead of NSP: label 1 = the two segments (same document) are swapped.")
flags.DEFINE_integer("max_ngram_size", 1, "ALBERT n-gram masking over whole words, n <= this, p(n) ~ 1/n.")
flags.DEFINE_integer("num_workers", 0, "Worker processes building instances (0: all cores).")
flags.DEFINE_bool("gzip_compress", False, "Write GZIP-compressed TFRecords.")
flags.DEFINE_integer("num_output_shards", 0, "Write this many shards <stem>-0000i-of-0000N<ext> from --output_file.")
flags.DEFINE_integer("docs_per_chunk", 500, "Documents read, tokenized and processed together (bounds memory; "
                     "the random next sentence comes from the same chunk; part of the determinism contract).")
flags.DEFINE_bool("progress", True, "Show documents and instances per second on stderr.")

MAX_SEQ_LENGTH_RANGE = (5, 512)


def _check_flags():
    """Flag errors, before the packages are imported."""
    UserError = bertkit_errors.UserError
    for name in ("input_file", "output_file", "vocab_file"):
        if not getattr(FLAGS, name):
            raise UserError(f"--{name}: required")
    lo, hi = MAX_SEQ_LENGTH_RANGE
    if not lo <= FLAGS.max_seq_length <= hi:
        raise UserError(f"--max_seq_length={FLAGS.max_seq_length}: must be in [{lo}, {hi}] "
                        f"([CLS] A [SEP] B [SEP] needs at least 5)")
    if not 1 <= FLAGS.max_predictions_per_seq <= FLAGS.max_seq_length:
        raise UserError(f"--max_predictions_per_seq={FLAGS.max_predictions_per_seq}: must be in "
                        f"[1, max_seq_length={FLAGS.max_seq_length}]")
    if not 0.0 < FLAGS.masked_lm_prob <= 1.0:
        raise UserError(f"--masked_lm_prob={FLAGS.masked_lm_prob}: must be in (0, 1]")
    if not 0.0 <= FLAGS.short_seq_prob <= 1.0:
        raise UserError(f"--short_seq_prob={FLAGS.short_seq_prob}: must be in [0, 1]")
    if FLAGS.dupe_factor < 1:
        raise UserError(f"--dupe_factor={FLAGS.dupe_factor}: must be >= 1")
    if FLAGS.max_ngram_size < 1:
        raise UserError(f"--max_ngram_size={FLAGS.max_ngram_size}: must be >= 1")
    if FLAGS.num_workers < 0:
        raise UserError(f"--num_workers={FLAGS.num_workers}: must be >= 0 (0: all cores)")
    if FLAGS.num_output_shards < 0:
        raise UserError(f"--num_output_shards={FLAGS.num_output_shards}: must be >= 0")
    if FLAGS.docs_per_chunk < 1:
        raise UserError(f"--docs_per_chunk={FLAGS.docs_per_chunk}: must be >= 1")


def main(argv):
    del argv
    _check_flags()
    from data import pretraining, pretraining_writer, schema
    from tokenization import FullTokenizer  # no TensorFlow until a FullTokenizer is made (after the fork below)

    input_files = schema.expand_file_patterns(FLAGS.input_file, flag="input_file", skip_non_records=False)
    output_files = pretraining_writer.output_paths(FLAGS.output_file, FLAGS.num_output_shards)
    bertkit_io.refuse_output_on_input(
        [("output_file", output_files), ("output_file", pretraining_writer.summary_path(FLAGS.output_file))],
        [("input_file", input_files), ("vocab_file", FLAGS.vocab_file)])
    for path in output_files:
        bertkit_io.check_output_file(path, "output_file")
    vocab = pretraining.read_vocab(FLAGS.vocab_file)
    cfg = pretraining.InstanceConfig(
        max_seq_length=FLAGS.max_seq_length, max_predictions_per_seq=FLAGS.max_predictions_per_seq,
        masked_lm_prob=FLAGS.masked_lm_prob, short_seq_prob=FLAGS.short_seq_prob, dupe_factor=FLAGS.dupe_factor,
        random_seed=FLAGS.random_seed, do_whole_word_mask=FLAGS.do_whole_word_mask,
        max_ngram_size=FLAGS.max_ngram_size, sentence_order_prediction=FLAGS.sentence_order_prediction,
        **pretraining.vocab_info(vocab))
    num_workers = pretraining_writer.worker_count(FLAGS.num_workers)
    # Fork the workers before TensorFlow is imported (by the tokenizer / the writer): they only need numpy.
    pool = pretraining_writer.start_pool(num_workers, cfg)
    try:
        tokenizer = FullTokenizer(FLAGS.vocab_file, do_lower_case=FLAGS.do_lower_case)
        flag_values = {name: FLAGS[name].value for name in (
            "input_file", "output_file", "vocab_file", "do_lower_case", "do_whole_word_mask", "max_seq_length",
            "max_predictions_per_seq", "random_seed", "dupe_factor", "masked_lm_prob", "short_seq_prob",
            "sentence_order_prediction", "max_ngram_size", "num_workers", "gzip_compress", "num_output_shards",
            "docs_per_chunk")}
        summary = pretraining_writer.run(
            input_files, output_files, tokenizer.encode_batch, cfg, pool=pool, num_workers=num_workers,
            gzip_compress=FLAGS.gzip_compress, docs_per_chunk=FLAGS.docs_per_chunk,
            summary_file=pretraining_writer.summary_path(FLAGS.output_file), flags=flag_values,
            progress=FLAGS.progress, t_start=_T_START)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    print(f"wrote {summary['instances']:,} instances to {len(output_files)} file(s) in {summary['seconds']:.1f} s "
          f"({summary['instances_per_second']:,.0f} instances/s)", file=sys.stderr)
    # Every output is closed and renamed: skip the interpreter's slow teardown of TensorFlow (about a second).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    bertkit_errors.run_main(main)
