import json
import os

import pytest
import tensorflow as tf

from bertkit_errors import UserError
from training import distribution as dist


def test_one_device_on_cpu():
    s = dist.get_strategy("one_device", num_gpus=0)
    assert isinstance(s, tf.distribute.OneDeviceStrategy)
    assert "CPU" in s.extended.worker_devices[0].upper()
    with s.scope():
        v = tf.Variable(1.0)
    assert float(s.run(lambda: v * 3.0)) == 3.0


def test_mirrored_on_cpu_runs_and_reduces():
    s = dist.get_strategy("Mirrored", num_gpus=0)
    assert isinstance(s, tf.distribute.MirroredStrategy)
    assert s.num_replicas_in_sync == 1
    out = s.run(tf.function(lambda: tf.constant([1.0, 2.0])))
    assert s.reduce(tf.distribute.ReduceOp.SUM, out, axis=0).numpy() == pytest.approx(3.0)


def test_default_without_gpus_is_one_device():
    if tf.config.list_logical_devices("GPU"):
        pytest.skip("machine has GPUs")
    assert isinstance(dist.get_strategy(None), tf.distribute.OneDeviceStrategy)


def test_bad_name_and_bad_gpu_count():
    with pytest.raises(UserError, match="--distribution_strategy.*'horovod'"):
        dist.get_strategy("horovod")
    with pytest.raises(UserError, match="--num_gpus"):
        dist.get_strategy("mirrored", num_gpus=len(tf.config.list_logical_devices("GPU")) + 1)


def _tf_config(monkeypatch, task_type, index, chief=True):
    cluster = {"worker": ["h1:1", "h2:2"]}
    if chief:
        cluster["chief"] = ["h0:0"]
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}}))


def test_worker_info_is_chief_and_write_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert dist.worker_info() == (None, 0)
    assert dist.is_chief() and dist.write_dir_for_worker(str(tmp_path)) == str(tmp_path)

    _tf_config(monkeypatch, "chief", 0)
    assert dist.worker_info() == ("chief", 0) and dist.is_chief()
    _tf_config(monkeypatch, "worker", 0)
    assert not dist.is_chief()  # the cluster has a chief
    d = dist.write_dir_for_worker(str(tmp_path))
    assert d != str(tmp_path) and os.path.isdir(d) and "worker_0" in d
    os.rmdir(d)
    _tf_config(monkeypatch, "worker", 0, chief=False)
    assert dist.is_chief()
    _tf_config(monkeypatch, "worker", 1, chief=False)
    assert dist.worker_info() == ("worker", 1) and not dist.is_chief()
    # single-host strategies are always chief
    assert dist.is_chief(dist.get_strategy("one_device", num_gpus=0))
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(UserError, match="TF_CONFIG"):
        dist.worker_info()
