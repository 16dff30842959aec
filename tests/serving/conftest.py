"""Toy SavedModels in TF Serving layout for the server tests (built once per session, a few seconds)."""
import os

import pytest

LABELS = ["short", "long", "versioned"]


def build_toy_classifier(path, version):
    """A 'classifier' over text lengths with bertkit's classifier signatures.

    serving_default(text_a: string[None]) -> probabilities[None,3], logits, label_id int64[None], label string[None],
                                              version int32[None]
    serve_ids(input_ids, input_mask, segment_ids: int32[None,None]) -> probabilities, logits, version
    serve_examples(examples: serialized tf.Example string[None], feature text_a) -> same as serving_default
    Logits for a text of length L: [10 - L, L, 3 * version]. Variables `calls` / `rows` count model calls and rows.
    """
    import tensorflow as tf

    class Toy(tf.Module):
        def __init__(self):
            super().__init__()
            self.calls = tf.Variable(0, dtype=tf.int64)
            self.rows = tf.Variable(0, dtype=tf.int64)
            self.version = tf.constant(version, tf.int32)
            self.labels = tf.constant(LABELS)

        def _head(self, length):
            n = tf.shape(length)[0]
            self.calls.assign_add(1)
            self.rows.assign_add(tf.cast(n, tf.int64))
            length = tf.cast(length, tf.float32)
            logits = tf.stack([10.0 - length, length, tf.fill([n], 3.0 * float(version))], axis=1)
            label_id = tf.argmax(logits, axis=1)
            return {"logits": logits, "probabilities": tf.nn.softmax(logits), "label_id": label_id,
                    "label": tf.gather(self.labels, label_id), "version": tf.fill([n], self.version)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text_a")])
        def serving_default(self, text_a):
            return self._head(tf.strings.length(text_a, unit="UTF8_CHAR"))

        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32, name="input_ids"),
                                      tf.TensorSpec([None, None], tf.int32, name="input_mask"),
                                      tf.TensorSpec([None, None], tf.int32, name="segment_ids")])
        def serve_ids(self, input_ids, input_mask, segment_ids):
            out = self._head(tf.reduce_sum(input_mask, axis=1))
            return {k: out[k] for k in ("logits", "probabilities", "version")}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serve_examples(self, examples):
            feats = tf.io.parse_example(examples, {"text_a": tf.io.FixedLenFeature([], tf.string)})
            return self._head(tf.strings.length(feats["text_a"], unit="UTF8_CHAR"))

    m = Toy()
    tf.saved_model.save(m, path, signatures={"serving_default": m.serving_default, "serve_ids": m.serve_ids,
                                             "serve_examples": m.serve_examples})
    os.makedirs(os.path.join(path, "assets"), exist_ok=True)
    with open(os.path.join(path, "assets", "labels.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(LABELS) + "\n")


def build_echo_model(path):
    """serving_default(data: string[None]) -> data_bytes (same bytes), n: int32[None] (byte lengths);
    scale(x: float32[None,2], k: float32 scalar) -> y = x * k  (columnar-only: k has no batch dimension);
    regress(examples) -> outputs = feature x * 2 + bias;
    wait(started, release: string scalars) -> iterations: writes file `started`, then spins until file `release`
    exists (at most a few million checks), so a test can hold a model call open for as long as it needs."""
    import tensorflow as tf

    class Echo(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="data")])
        def echo(self, data):
            return {"data_bytes": tf.identity(data), "n": tf.strings.length(data)}

        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x"),
                                      tf.TensorSpec([], tf.float32, name="k")])
        def scale(self, x, k):
            return {"y": x * k}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def regress(self, examples):
            feats = tf.io.parse_example(examples, {"x": tf.io.FixedLenFeature([], tf.float32),
                                                   "bias": tf.io.FixedLenFeature([], tf.float32, default_value=0)})
            return {"outputs": feats["x"] * 2.0 + feats["bias"]}

        @tf.function(input_signature=[tf.TensorSpec([], tf.string, name="started"),
                                      tf.TensorSpec([], tf.string, name="release")])
        def wait(self, started, release):
            with tf.control_dependencies([tf.io.write_file(started, "1")]):
                i = tf.constant(0)

            def cond(i):
                return tf.logical_and(tf.equal(tf.size(tf.io.matching_files(release)), 0), i < 5_000_000)
            return {"iterations": tf.while_loop(cond, lambda i: i + 1, [i])[0]}

    m = Echo()
    tf.saved_model.save(m, path, signatures={"serving_default": m.echo, "scale": m.scale, "regress": m.regress,
                                             "wait": m.wait})


@pytest.fixture(scope="session")
def model_root(tmp_path_factory):
    """root/toy/{1,2} (toy classifier versions 1 and 2), root/echo/1, and root/spare/3 (a later version of toy)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    root = tmp_path_factory.mktemp("models")
    for v in (1, 2):
        build_toy_classifier(str(root / "toy" / str(v)), v)
    build_toy_classifier(str(root / "spare" / "3"), 3)
    build_echo_model(str(root / "echo" / "1"))
    return root
