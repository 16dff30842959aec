"""convert_checkpoint.py end to end: a HuggingFace directory -> a bertkit model directory (one subprocess), and the
one-line error for input it cannot read."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMALL = dict(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
             max_position_embeddings=16, type_vocab_size=2)


def _run(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, os.path.join(ROOT, "convert_checkpoint.py"), *args], capture_output=True,
                          text=True, timeout=300, env=env, cwd=ROOT)


def test_convert_hf_directory(tmp_path):
    torch.manual_seed(0)
    model = transformers.BertForPreTraining(transformers.BertConfig(**SMALL)).eval()
    src = str(tmp_path / "hf")
    model.save_pretrained(src, safe_serialization=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(35)]
    with open(os.path.join(src, "vocab.txt"), "w") as f:
        f.write("\n".join(vocab) + "\n")
    with open(os.path.join(src, "tokenizer_config.json"), "w") as f:
        json.dump({"do_lower_case": False}, f)
    out = str(tmp_path / "converted")
    r = _run(f"--input_checkpoint={src}", f"--output_dir={out}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "read hf checkpoint" in r.stdout and "encoder + mlm_head + nsp_head" in r.stdout
    assert f"wrote {os.path.join(out, 'ckpt-0')}" in r.stdout
    assert set(os.listdir(out)) >= {"checkpoint", "ckpt-0.index", "bert_config.json", "vocab.txt", "bertkit.json"}
    with open(os.path.join(out, "bertkit.json")) as f:
        assert json.load(f)["do_lower_case"] is False
    with open(os.path.join(out, "vocab.txt")) as f:
        assert f.read().split() == vocab

    from modeling import checkpoints
    bundle = checkpoints.load_checkpoint(out)
    assert bundle.format == "bertkit" and bundle.mlm_head is not None and bundle.nsp_head is not None
    ids = np.array([[2, 7, 9, 3, 0, 0], [2, 11, 3, 12, 13, 3]])
    mask = (ids > 0).astype(np.int64)
    seg = np.array([[0, 0, 0, 0, 0, 0], [0, 0, 0, 1, 1, 1]])
    with torch.no_grad():
        ref = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), token_type_ids=torch.tensor(seg))
        base = model.bert(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                          token_type_ids=torch.tensor(seg))
    enc_out = bundle.encoder({"input_ids": ids, "input_mask": mask, "segment_ids": seg})
    np.testing.assert_allclose(enc_out["sequence_output"].numpy(), base.last_hidden_state.numpy(), atol=1e-4)
    np.testing.assert_allclose(bundle.nsp_head(enc_out["pooled_output"]).numpy(),
                               ref.seq_relationship_logits.numpy(), atol=1e-4)

    # a second conversion into the same directory is refused; errors are one line, exit 1
    import bertkit_errors
    with pytest.raises(bertkit_errors.UserError, match="already holds a checkpoint"):
        checkpoints.convert_to_bertkit(src, out)  # in-process: the library function behind the script
    r = _run(f"--input_checkpoint={tmp_path / 'missing'}", f"--output_dir={tmp_path / 'x'}")
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last == f"error: --input_checkpoint={tmp_path / 'missing'}: no such file or directory", r.stderr[-2000:]
    assert "Traceback" not in r.stderr
