"""Damaged checkpoints and full disks: a resume falls back to the previous readable checkpoint, readers name the
checkpoint, a checkpoint save on a full disk is one line and leaves no `ckpt-N_temp/`."""
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import bertkit_errors
from modeling import ModelConfig, build_encoder, checkpoints
from training import checkpointing
from training import trainer as T

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Toy(keras.Model):
    def __init__(self):
        super().__init__()
        self.hidden = keras.layers.Dense(64, kernel_initializer=keras.initializers.GlorotUniform(1))
        self.out = keras.layers.Dense(1, kernel_initializer=keras.initializers.GlorotUniform(2))

    def call(self, features, training=False):
        return {"pred": self.out(self.hidden(features["x"]))[:, 0]}


def toy_loss(features, outputs):
    err = outputs["pred"] - features["y"]
    return tf.reduce_mean(tf.square(err)), {}


def _run(out, steps, messages=None):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 4)).astype("float32")
    batch = {"x": x, "y": x.sum(1)}
    net = Toy()
    tr = T.TrainerModel(net, toy_loss, [])
    tr.compile(optimizer=keras.optimizers.Adam(0.01), steps_per_execution=1)
    return T.run_training(
        tr, lambda ctx: tf.data.Dataset.from_tensors(batch).repeat(), strategy=tf.distribute.get_strategy(),
        output_dir=str(out), num_train_steps=steps, steps_per_checkpoint=2,
        checkpoint_items={"net": net, "optimizer": tr.optimizer, "global_step": tr.global_step},
        examples_per_step=8, print_fn=(messages.append if messages is not None else lambda *_: None))


def _truncate(prefix):
    data = prefix + ".data-00000-of-00001"
    with open(data, "r+b") as f:
        f.truncate(os.path.getsize(data) // 2)


def test_resume_skips_a_truncated_newest_checkpoint(tmp_path):
    _run(tmp_path, 4)
    _truncate(str(tmp_path / "ckpt-4"))
    messages = []
    result = _run(tmp_path, 6, messages)
    assert result["resumed"] and result["initial_step"] == 2 and result["global_step"] == 6
    warning = [m for m in messages if m.startswith("warning:")]
    assert warning and f"{tmp_path / 'ckpt-4'}: checkpoint is damaged or truncated" in warning[0]
    assert any(f"resuming from {tmp_path / 'ckpt-2'}" in m for m in messages)


def test_resume_with_no_readable_checkpoint_names_the_newest(tmp_path):
    _run(tmp_path, 4)
    _truncate(str(tmp_path / "ckpt-4"))
    _truncate(str(tmp_path / "ckpt-2"))
    with pytest.raises(bertkit_errors.UserError,
                       match=r"ckpt-4: checkpoint is damaged or truncated .*no earlier readable checkpoint"):
        _run(tmp_path, 6)


def test_checkpoint_save_on_a_full_disk(tmp_path, monkeypatch):
    def full_disk(self, checkpoint_number=None, **_):
        os.makedirs(os.path.join(self.directory, f"ckpt-{checkpoint_number}_temp"))
        raise tf.errors.ResourceExhaustedError(
            None, None, f"{self.directory}/ckpt-{checkpoint_number}_temp/part-00000-of-00001.data-00000-of-00001"
                        ".tempstate1; No space left on device")

    monkeypatch.setattr(tf.train.CheckpointManager, "save", full_disk)
    with pytest.raises(bertkit_errors.UserError, match=r"no space left on device while saving checkpoint ckpt-2"):
        _run(tmp_path, 4)
    assert not [n for n in os.listdir(tmp_path) if n.endswith("_temp")]


def _tiny_model_dir(tmp_path):
    config = ModelConfig.from_json_file(os.path.join(ROOT, "configs", "tiny_bert.json"))
    encoder = build_encoder(config)
    encoder({"input_ids": tf.zeros([1, 4], tf.int32), "input_mask": tf.ones([1, 4], tf.int32),
             "segment_ids": tf.zeros([1, 4], tf.int32)})
    prefix = checkpoints.save_bertkit_checkpoint(str(tmp_path / "model"), config, encoder)
    return config, prefix


def test_readers_name_a_truncated_checkpoint(tmp_path):
    config, prefix = _tiny_model_dir(tmp_path)
    _truncate(prefix)
    with pytest.raises(bertkit_errors.UserError, match=r"ckpt-0: checkpoint is damaged or truncated"):
        checkpoints.convert_to_bertkit(str(tmp_path / "model"), str(tmp_path / "converted"))
    encoder = build_encoder(config)
    encoder({"input_ids": tf.zeros([1, 4], tf.int32), "input_mask": tf.ones([1, 4], tf.int32),
             "segment_ids": tf.zeros([1, 4], tf.int32)})
    with pytest.raises(bertkit_errors.UserError, match=r"--init_checkpoint=.*ckpt-0: checkpoint is damaged"):
        checkpointing.restore_encoder_weights(encoder, str(tmp_path / "model"))
