"""Script names and setup helpers of the case catalog: each helper returns `setup(ctx, d)`, which runs in the case
folder `d` before the case."""
import json
import os
import shutil

from bench.bad_inputs.common import copy, tmpfs, write

BV = "build_vocab.py"
CPD = "create_pretraining_data.py"
CFD = "create_finetuning_data.py"
RP = "run_pretraining.py"
RC = "run_classifier.py"
EX = "export_model.py"
CC = "convert_checkpoint.py"
AD = "augment_data.py"
SV = "serve.py"
DM = "demo.py"


def mk(path_fn):   # setup writing a file; path_fn(ctx, d)
    def setup(ctx, d):
        path_fn(ctx, d)
    return setup


def copy_of(key, rel):
    def setup(ctx, d):
        copy(ctx.paths[key], os.path.join(d, rel))
    return setup


def seq(*fns):
    def setup(ctx, d):
        r = None
        for f in fns:
            r = f(ctx, d) or r
        return r
    return setup


def vocab_variant(transform, name="vocab.txt"):
    def setup(ctx, d):
        with open(ctx.fx.vocab, encoding="utf-8") as f:
            toks = f.read().splitlines()
        write(os.path.join(d, name), "\n".join(transform(toks)) + "\n")
    return setup


def config_variant(**over):
    def setup(ctx, d):
        with open(ctx.fx.config) as f:
            cfg = json.load(f)
        cfg.update(over)
        write(os.path.join(d, "cfg.json"), json.dumps(cfg))
    return setup


def bbc_variant(train_text):
    def setup(ctx, d):
        os.makedirs(os.path.join(d, "data"))
        shutil.copy(os.path.join(ctx.fx.data, "dev.tsv"), os.path.join(d, "data", "dev.tsv"))
        write(os.path.join(d, "data", "train.tsv"), train_text, "wb" if isinstance(train_text, bytes) else "w")
    return setup


def ro_mount(rel):
    def setup(ctx, d):
        return tmpfs(os.path.join(d, rel), size="1m", ro=True)
    return setup
