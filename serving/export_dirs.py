"""TF Serving's export layout: `export_base/<version>/`, written into a hidden staging folder and renamed when complete.

    next_version(export_base) -> int          # 1 + the highest numeric folder
    with staging_dir(export_base) as tmp:     # export_base/.tmp-export-<pid>-..., removed unless published
        ... write tmp/v ...
        publish(tmp/v, export_base) -> version_dir
    write_warmup(version_dir, [(signature_name, {input: array}), ...])   # assets.extra/tf_serving_warmup_requests
    write_metadata(version_dir, {...})                                   # assets.extra/bertkit_export.json

The warm-up file holds TF Serving PredictionLog protos, encoded by hand (`prediction_log_bytes`; tensorflow-serving-api
is not a dependency). serving/export.py builds the SavedModels that go into this layout.
"""
import contextlib
import json
import os
import re
import shutil
import tempfile

import numpy as np
import tensorflow as tf

import bertkit_errors
import bertkit_io

WARMUP_FILE = "tf_serving_warmup_requests"
METADATA_FILE = "bertkit_export.json"

_VERSION_RE = re.compile(r"[0-9]+")


# ---------------------------------------------------------------------------------------------------- versions
def next_version(export_base):
    """1 + the highest numeric folder name in export_base (1 when there is none or export_base does not exist)."""
    export_base = os.fspath(export_base)
    if not os.path.isdir(export_base):
        return 1
    versions = [int(n) for n in os.listdir(export_base)
                if _VERSION_RE.fullmatch(n) and os.path.isdir(os.path.join(export_base, n))]
    return max(versions, default=0) + 1


def publish(tmp_dir, export_base):
    """Rename the finished tmp_dir to the next version number (retrying if another export took it)."""
    for _ in range(100):
        version = next_version(export_base)
        final = os.path.join(export_base, str(version))
        try:
            os.rename(tmp_dir, final)  # fails if `final` appeared meanwhile (non-empty dir) -> next number
            return final
        except OSError:
            if not os.path.exists(final):
                raise
    raise RuntimeError(f"{export_base}: could not find a free version number")  # pragma: no cover


@contextlib.contextmanager
def staging_dir(export_base):
    """A temporary folder beside the versions, removed unless published."""
    export_base = os.fspath(export_base)
    try:
        os.makedirs(export_base, exist_ok=True)
    except OSError as e:
        raise bertkit_errors.UserError(f"--export_dir={export_base}: cannot create directory ({e.strerror})") from None
    bertkit_io.remove_stale_temps(export_base, "export")  # staging folders of killed exports
    tmp = tempfile.mkdtemp(prefix=f".tmp-export-{os.getpid()}-", dir=export_base)
    try:
        yield tmp
    except BaseException as e:
        if bertkit_io.is_no_space(e):
            raise bertkit_errors.UserError(f"--export_dir={export_base}: no space left on device") from None
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------- warm-up file
def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _len_field(number, payload):
    """A length-delimited protobuf field (wire type 2)."""
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


def prediction_log_bytes(signature_name, inputs):
    """A serialized tensorflow.serving.PredictionLog{predict_log{request{model_spec{signature_name}, inputs}}},
    encoded by hand (tensorflow-serving-api is not a dependency). `inputs`: {name: array-like}.

    Field numbers (tensorflow_serving/apis): PredictionLog.predict_log = 6; PredictLog.request = 1;
    PredictRequest.model_spec = 1, .inputs = 2 (map<string, TensorProto>: entry key = 1, value = 2);
    ModelSpec.signature_name = 3."""
    request = _len_field(1, _len_field(3, signature_name.encode("utf-8")))
    for name in sorted(inputs):
        tensor = tf.make_tensor_proto(inputs[name]).SerializeToString()
        request += _len_field(2, _len_field(1, name.encode("utf-8")) + _len_field(2, tensor))
    return _len_field(6, _len_field(1, request))


def write_warmup(version_dir, requests):
    extra = os.path.join(version_dir, "assets.extra")
    os.makedirs(extra, exist_ok=True)
    with tf.io.TFRecordWriter(os.path.join(extra, WARMUP_FILE)) as w:
        for signature_name, inputs in requests:
            w.write(prediction_log_bytes(signature_name, inputs))


def write_metadata(version_dir, meta):
    extra = os.path.join(version_dir, "assets.extra")
    os.makedirs(extra, exist_ok=True)
    with open(os.path.join(extra, METADATA_FILE), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2, ensure_ascii=False)
        f.write("\n")


def text_array(texts):
    return np.array([t.encode("utf-8") if isinstance(t, str) else bytes(t) for t in texts], dtype=object)


def serialized_examples(texts_a, texts_b=None):
    out = []
    for i, a in enumerate(texts_a):
        feats = {"text_a": tf.train.Feature(bytes_list=tf.train.BytesList(value=[text_array([a])[0]]))}
        if texts_b is not None:
            feats["text_b"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[text_array([texts_b[i]])[0]]))
        out.append(tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString())
    return np.array(out, dtype=object)
