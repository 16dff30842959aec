"""Learning a BERT WordPiece vocabulary from text files (build_vocab.py).

    build_vocab(files, vocab_size, do_lower_case=True, num_unused=0, reserved_tokens=(), ...) -> tokens in vocab order

Words come from the original BERT basic tokenization (tokenization.basic_tokenize), the pieces from tensorflow-text's
WordPiece learner. Order: [PAD] (id 0), [unused0] .. [unused{N-1}], [UNK] [CLS] [SEP] [MASK], the reserved tokens,
then the learned pieces.
"""
import collections

from tensorflow_text.tools.wordpiece_vocab import wordpiece_tokenizer_learner_lib as learner

import bertkit_errors
from tokenization import basic_tokenize

SPECIAL = ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def count_words(files, do_lower_case):
    counts = collections.Counter()
    for path in files:
        with open(path, "rb") as f:
            for lineno, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise bertkit_errors.UserError(
                        f"{path}:{lineno}: not valid UTF-8 (byte offset {e.start} in the line)") from None
                counts.update(basic_tokenize(line, do_lower_case))
    return counts


def special_tokens(num_unused, reserved):
    head = ["[PAD]"] + [f"[unused{i}]" for i in range(num_unused)] + SPECIAL
    return head + [t for t in reserved if t not in head]


def build_vocab(files, vocab_size, do_lower_case=True, num_unused=0, reserved_tokens=(), min_count=1,
                max_token_length=50, max_unique_chars=1000):
    """-> list of tokens (vocab order)."""
    if num_unused < 0:
        raise bertkit_errors.UserError(f"--num_unused={num_unused}: must be >= 0")
    head = special_tokens(num_unused, list(reserved_tokens))
    if vocab_size <= len(head):
        raise bertkit_errors.UserError(
            f"--vocab_size={vocab_size}: too small, the {len(head)} special/reserved tokens leave no room for pieces")
    counts = count_words(files, do_lower_case)
    if not counts:
        raise bertkit_errors.UserError(f"--input_file: the input files ({', '.join(files)}) contain no text")
    learned = learner.learn(counts.items(), vocab_size=vocab_size, reserved_tokens=head, upper_thresh=10_000_000,
                            lower_thresh=max(1, min_count), num_iterations=4, max_input_tokens=5_000_000,
                            max_token_length=max_token_length, max_unique_chars=max_unique_chars,
                            slack_ratio=0.05, include_joiner_token=False, joiner="##")
    seen = set(head)
    pieces = []
    for t in learned:
        if t not in seen and t.strip() == t and t:
            seen.add(t)
            pieces.append(t)
    return (head + pieces)[:vocab_size]
