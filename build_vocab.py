"""Learn a BERT WordPiece vocabulary from text files.

    python build_vocab.py --input_file='corpus/*.txt' --output_file=vocab.txt --vocab_size=8000 --do_lower_case

Words are produced by the same basic tokenization as tokenization.FullTokenizer (the original BERT BasicTokenizer),
so the learned pieces are exactly what the tokenizer will look up. The pieces are learned with tensorflow-text's
WordPiece learner (the algorithm behind bert_vocab_from_dataset); logic: tokenization/vocab_learning.py. Output
order: [PAD] (id 0), [unused0] .. [unused{N-1}], [UNK] [CLS] [SEP] [MASK], any --reserved_tokens, then the learned
pieces.
"""
import glob
import os

from absl import flags

import bertkit_errors
import bertkit_io

FLAGS = flags.FLAGS
flags.DEFINE_string("input_file", None, "Comma-separated globs of UTF-8 text files (one sentence/line).")
flags.DEFINE_string("output_file", None, "Where to write vocab.txt.")
flags.DEFINE_integer("vocab_size", 30522, "Target vocabulary size, special tokens included (an upper bound).")
flags.DEFINE_bool("do_lower_case", True, "Lower-case and strip accents, as for an uncased model.")
flags.DEFINE_integer("num_unused", 0, "Number of [unusedN] placeholder tokens after [PAD].")
flags.DEFINE_list("reserved_tokens", [], "Extra tokens to keep right after the special tokens.")
flags.DEFINE_integer("min_count", 1, "Lowest word-piece frequency the learner may use as threshold.")
flags.DEFINE_integer("max_token_length", 50, "Words longer than this are not used for learning.")
flags.DEFINE_integer("max_unique_chars", 1000, "Alphabet size cap (rarer characters are left out).")

def resolve_inputs(patterns):
    files = []
    for pattern in [p.strip() for p in (patterns or "").split(",") if p.strip()]:
        matches = sorted(glob.glob(pattern))
        if not matches:
            raise bertkit_errors.UserError(f"--input_file: no file matches {pattern!r}")
        dirs = [m for m in matches if os.path.isdir(m)]
        if dirs and len(dirs) == len(matches):
            raise bertkit_errors.UserError(
                f"--input_file={pattern}: {dirs[0]} is a directory; name the files (e.g. {dirs[0]}/*.txt)")
        files.extend(m for m in matches if os.path.isfile(m))
    if not files:
        raise bertkit_errors.UserError("--input_file: no input files given")
    return files


def main(argv):
    del argv
    bertkit_io.check_output_file(FLAGS.output_file, "output_file")  # before the learning, which takes a while
    files = resolve_inputs(FLAGS.input_file)
    bertkit_io.refuse_output_on_input([("output_file", FLAGS.output_file)], [("input_file", files)])
    from tokenization import vocab_learning

    vocab = vocab_learning.build_vocab(files, FLAGS.vocab_size, FLAGS.do_lower_case, FLAGS.num_unused,
                                       FLAGS.reserved_tokens, FLAGS.min_count, FLAGS.max_token_length,
                                       FLAGS.max_unique_chars)
    out_dir = os.path.dirname(os.path.abspath(FLAGS.output_file))
    bertkit_io.ensure_writable_dir(out_dir, "output_file")
    with bertkit_io.atomic_write(FLAGS.output_file) as f:
        for t in vocab:
            f.write(t + "\n")
    print(f"wrote {len(vocab)} tokens to {FLAGS.output_file}")


if __name__ == "__main__":
    bertkit_errors.run_main(main)
