"""issue 19: an output path that is an input file (same path, `..`, symlink, hard link, glob, comma list) is refused
before any work, with one line naming both flags; the input is left as it was."""
import json
import os
import shutil
import subprocess
import sys

import pytest

import bertkit_errors
import bertkit_io

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VOCAB = os.path.join(ROOT, "tests", "data_files", "bert_uncased_vocab.txt")
CORPUS = "The cat sat on the mat.\nIt was a sunny day.\n\nA second document here.\nWith two lines.\n"


def _env():
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": ROOT}


def _script(name, *args):
    return subprocess.run([sys.executable, os.path.join(ROOT, name), *args], capture_output=True, text=True,
                          env=_env(), cwd=ROOT, timeout=300)


def _refused(proc, out_flag, in_flag):
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert lines and lines[-1].startswith(f"error: --{out_flag}=") and f"same file as --{in_flag}=" in lines[-1], \
        proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_helper_resolves_paths_links_globs_and_lists(tmp_path):
    src = tmp_path / "c.txt"
    src.write_text(CORPUS)
    (tmp_path / "sub").mkdir()
    os.symlink(src, tmp_path / "link.txt")
    os.link(src, tmp_path / "hard.txt")
    other = tmp_path / "other.txt"
    other.write_text("x")
    refuse = bertkit_io.refuse_output_on_input
    for out in (str(src), str(tmp_path / "sub" / ".." / "c.txt"), str(tmp_path / "link.txt"),
                str(tmp_path / "hard.txt")):
        with pytest.raises(bertkit_errors.UserError, match=r"^--output_file=.* is the same file as --input_file="):
            refuse([("output_file", out)], [("input_file", str(other) + "," + str(tmp_path / "c.*"))])
    with pytest.raises(bertkit_errors.UserError, match=r"--out=.*\(.*c\.txt\) is the same file as --in="):
        refuse([("out", [str(tmp_path / "new.txt"), str(src)])], [("in", [str(src)])])
    with pytest.raises(bertkit_errors.UserError, match="--output_dir=.* is the same file as --init_checkpoint="):
        refuse([("output_dir", str(tmp_path / "sub" / ".."))], [("init_checkpoint", str(tmp_path))])
    refuse([("output_file", str(tmp_path / "new.txt")), ("output_file", None)],
           [("input_file", str(tmp_path / "*.txt")), ("vocab_file", None)])
    assert bertkit_io.checkpoint_dir(str(tmp_path / "ckpt-3")) == str(tmp_path)
    assert bertkit_io.checkpoint_dir("bert_tiny_en_uncased") is None


def test_build_vocab_and_create_pretraining_data_refuse_their_input(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(CORPUS)
    _refused(_script("build_vocab.py", f"--input_file={corpus}", f"--output_file={corpus}", "--vocab_size=50"),
             "output_file", "input_file")
    os.symlink(corpus, tmp_path / "out.tfrecord")
    _refused(_script("create_pretraining_data.py", f"--input_file={tmp_path}/*.txt", f"--output_file={corpus}",
                     f"--vocab_file={VOCAB}", "--max_seq_length=32", "--max_predictions_per_seq=5"),
             "output_file", "input_file")
    _refused(_script("create_pretraining_data.py", f"--input_file={corpus}",
                     f"--output_file={tmp_path / 'out.tfrecord'}", f"--vocab_file={VOCAB}", "--max_seq_length=32",
                     "--max_predictions_per_seq=5"),
             "output_file", "input_file")
    assert corpus.read_text() == CORPUS


def test_augment_data_refuses_its_input(tmp_path):
    table = tmp_path / "train.tsv"
    table.write_text("text\tlabel\nthe cat sat\t1\n")
    before = table.read_text()
    same = f"{tmp_path}/../{tmp_path.name}/train.tsv"
    _refused(_script("augment_data.py", f"--input_file={table}", f"--output_file={same}",
                     f"--teacher_checkpoint={tmp_path}"), "output_file", "input_file")
    assert table.read_text() == before


def test_finetuning_records_refuse_to_land_on_a_source_file(tmp_path):
    from data import finetuning, processors
    from tokenization import FullTokenizer

    data = tmp_path / "RTE"
    shutil.copytree(os.path.join(ROOT, "tests", "fixtures", "glue", "RTE"), data)
    before = (data / "train.tsv").read_bytes()
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(data / "train.tsv", out / "train.tf_record")
    with pytest.raises(bertkit_errors.UserError, match=r"--output_dir=.*train\.tf_record.* same file as --data_dir="):
        finetuning.write_task_records(processors.get_processor("rte"), str(data), FullTokenizer(VOCAB), str(out),
                                      32, splits="train")
    assert (data / "train.tsv").read_bytes() == before and sorted(os.listdir(out)) == ["train.tf_record"]


def test_convert_and_export_refuse_to_write_over_their_input(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    config = json.load(open(os.path.join(ROOT, "configs", "tiny_bert.json")))
    (model / "bert_config.json").write_text(json.dumps(config))
    shutil.copy(VOCAB, model / "vocab.txt")
    before = {p: (model / p).read_bytes() for p in os.listdir(model)}
    _refused(_script("convert_checkpoint.py", f"--input_checkpoint={model}/bert_model.ckpt",
                     f"--output_dir={model}"), "output_dir", "input_checkpoint")
    _refused(_script("export_model.py", f"--init_checkpoint={model}", f"--export_dir={model}/vocab.txt"),
             "export_dir", "init_checkpoint")
    assert {p: (model / p).read_bytes() for p in os.listdir(model)} == before


def test_run_classifier_refuses_the_data_dir_as_output_dir(tmp_path):
    data = tmp_path / "RTE"
    shutil.copytree(os.path.join(ROOT, "tests", "fixtures", "glue", "RTE"), data)
    before = sorted(os.listdir(data))
    proc = _script("run_classifier.py", "--task_name=RTE", f"--data_dir={data}", f"--output_dir={data}/.",
                   f"--vocab_file={VOCAB}", f"--bert_config_file={ROOT}/configs/tiny_bert.json", "--do_train")
    _refused(proc, "output_dir", "data_dir")
    assert sorted(os.listdir(data)) == before
