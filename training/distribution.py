"""tf.distribute strategy selection for the run scripts (`--distribution_strategy`, `--tpu`, ...), and the
multi-worker helpers (who is chief, where a worker may write).

    strategy = get_strategy(FLAGS.distribution_strategy, tpu_name=FLAGS.tpu, ...)
    with strategy.scope(): model = ...; optimizer = ...
    ckpt_dir = write_dir_for_worker(FLAGS.output_dir, strategy)    # chief: output_dir; others: a local temp dir

Names: one_device | mirrored | multi_worker_mirrored | tpu. None picks: tpu when `tpu_name` is given, mirrored
over all GPUs when there is more than one, else one_device on GPU:0 (or CPU:0 when there is no GPU).
"""
import json
import os
import tempfile

import tensorflow as tf

from bertkit_errors import UserError

STRATEGY_NAMES = ("one_device", "mirrored", "multi_worker_mirrored", "tpu")
_FLAG = "--distribution_strategy"


def _gpus(num_gpus):
    gpus = tf.config.list_logical_devices("GPU")
    if num_gpus is None:
        return gpus
    if num_gpus < 0:
        raise UserError(f"--num_gpus: must be >= 0, got {num_gpus}")
    if num_gpus > len(gpus):
        raise UserError(f"--num_gpus: {num_gpus} GPUs asked for, {len(gpus)} present")
    return gpus[:num_gpus]


def _tpu_strategy(tpu_name, tpu_zone, gcp_project):
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
        tpu=tpu_name or "", zone=tpu_zone, project=gcp_project
    )
    if tpu_name not in (None, "", "local"):
        tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def get_strategy(name=None, tpu_name=None, tpu_zone=None, gcp_project=None, num_gpus=None):
    """A tf.distribute.Strategy by name (see the module docstring). Unknown names raise UserError naming
    `--distribution_strategy`; `num_gpus` limits the GPUs used by one_device / mirrored (0: CPU only)."""
    if name is not None:
        name = str(name).strip().lower() or None
    if name is None:
        if tpu_name:
            name = "tpu"
        else:
            name = "mirrored" if len(_gpus(num_gpus)) > 1 else "one_device"
    if name not in STRATEGY_NAMES:
        raise UserError(f"{_FLAG}: unknown strategy {name!r} (expected one of {', '.join(STRATEGY_NAMES)})")

    if name == "one_device":
        gpus = _gpus(num_gpus)
        return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    if name == "mirrored":
        gpus = _gpus(num_gpus)
        devices = [d.name for d in gpus] if gpus else ["/cpu:0"]
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker_mirrored":
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.AUTO
        )
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    try:
        return _tpu_strategy(tpu_name, tpu_zone, gcp_project)
    except (ValueError, tf.errors.NotFoundError, tf.errors.InvalidArgumentError) as e:
        raise UserError(f"--tpu: cannot connect to TPU {tpu_name!r}: {e}") from e


def worker_info():
    """(task_type, task_index) from TF_CONFIG; (None, 0) when TF_CONFIG is unset (a single worker)."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return None, 0
    try:
        task = json.loads(raw).get("task") or {}
    except (ValueError, AttributeError) as e:
        raise UserError(f"TF_CONFIG: not a JSON object: {e}") from e
    return task.get("type"), int(task.get("index", 0))


def _cluster_has_chief():
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return False
    try:
        return "chief" in (json.loads(raw).get("cluster") or {})
    except ValueError:
        return False


def is_chief(strategy=None):
    """True for the one process that writes summaries, checkpoints and exports: every non-multi-worker strategy;
    under MultiWorkerMirroredStrategy the `chief` task, or `worker` 0 when the cluster has no chief."""
    if strategy is not None and not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True  # one_device / mirrored / TPU: a single host program
    resolver = getattr(strategy, "cluster_resolver", None) if strategy is not None else None
    if resolver is not None:
        task_type, task_id = resolver.task_type, resolver.task_id
        has_chief = "chief" in (resolver.cluster_spec().as_dict() or {})
    else:
        task_type, task_id = worker_info()
        has_chief = _cluster_has_chief()
    if task_type is None:
        return True
    if task_type == "chief":
        return True
    return task_type == "worker" and task_id == 0 and not has_chief


def write_dir_for_worker(output_dir, strategy=None):
    """Where this worker should write checkpoints: `output_dir` for the chief; for other workers (which must still
    save, because saving is a collective operation under MultiWorkerMirroredStrategy) a fresh local temporary
    directory, per the TF multi-worker guide, so that they never overwrite the chief's files. The caller may delete
    a non-chief directory after saving."""
    if is_chief(strategy):
        return output_dir
    task_type, task_id = worker_info()
    resolver = getattr(strategy, "cluster_resolver", None) if strategy is not None else None
    if resolver is not None:
        task_type, task_id = resolver.task_type, resolver.task_id
    return tempfile.mkdtemp(prefix=f"bertkit_workertemp_{task_type}_{task_id}_")
