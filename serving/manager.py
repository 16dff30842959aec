"""The model manager behind serve.py: loads TF-Serving-layout SavedModels and keeps them current.

Models live in TF Serving's layout, `base_path/<version>/saved_model.pb`. `Servable` is one loaded version (its
signatures, their metadata and class labels, and the call of a signature on numpy inputs); `ModelManager` loads the
versions each model's `ModelSpecConfig` wants (in a background thread), polls the base paths for new or removed
version folders, and answers status and version lookups. The HTTP layer is serving/server.py.
"""
import dataclasses
import json
import logging
import os
import re
import threading
import time

import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the ops bertkit SavedModels use)
from google.protobuf import json_format
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2

import bertkit_errors
from serving import codec, model_config
from serving.codec import InvalidArgument, NotFound
from serving.model_config import ModelSpecConfig

log = logging.getLogger("bertkit.serving")

DEFAULT_SIGNATURE = "serving_default"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
PREDICT_METHOD = "tensorflow/serving/predict"


# ---------------------------------------------------------------- one loaded version


@dataclasses.dataclass
class Signature:
    name: str
    fn: object                    # the loaded concrete function
    inputs: dict                  # name -> tf.TensorSpec
    outputs: dict                 # name -> (tf.DType, tf.TensorShape)
    method_name: str = PREDICT_METHOD

    def np_input_dtypes(self):
        return {n: (object if s.dtype.name == "string" else s.dtype.as_numpy_dtype) for n, s in self.inputs.items()}


def _dtype_json(dtype):
    return types_pb2.DataType.Name(dtype.as_datatype_enum)


def _shape_json(shape):
    if shape.rank is None:
        return {"dim": [], "unknown_rank": True}
    return {"dim": [{"size": str(-1 if d is None else d), "name": ""} for d in shape.as_list()],
            "unknown_rank": False}


def _shape_str(shape):
    return "[?]" if shape.rank is None else "[" + ",".join("?" if d is None else str(d) for d in shape.as_list()) + "]"


class Servable:
    """One loaded SavedModel version and its signatures."""

    def __init__(self, model_name, version, path):
        self.model_name, self.version, self.path = model_name, version, path
        self.obj = tf.saved_model.load(path)
        sig_defs = self._read_signature_defs(path)
        self.signatures = {}
        for name, fn in self.obj.signatures.items():
            args, kwargs = fn.structured_input_signature
            inputs = dict(kwargs)
            outputs = {k: (v.dtype, v.shape) for k, v in fn.structured_outputs.items()}
            method = PREDICT_METHOD
            if name in sig_defs and sig_defs[name].method_name:
                method = sig_defs[name].method_name
            self.signatures[name] = Signature(name, fn, inputs, outputs, method)
        self.metadata = self._metadata(sig_defs)
        self.class_labels = self._read_class_labels(path)

    @staticmethod
    def _read_signature_defs(path):
        """SignatureDefs from saved_model.pb (method names, tensor names); {} when unreadable."""
        try:
            sm = saved_model_pb2.SavedModel()
            with open(os.path.join(path, "saved_model.pb"), "rb") as f:
                sm.ParseFromString(f.read())
            for mg in sm.meta_graphs:
                if "serve" in mg.meta_info_def.tags:
                    return dict(mg.signature_def)
            return dict(sm.meta_graphs[0].signature_def) if sm.meta_graphs else {}
        except Exception as e:  # noqa: BLE001 - metadata falls back to the loaded signatures
            log.warning("%s: cannot read signature defs from saved_model.pb (%s)", path, e)
            return {}

    def _metadata(self, sig_defs):
        out = {}
        for name, sd in sig_defs.items():
            if name in self.signatures or name.startswith("__"):
                out[name] = json_format.MessageToDict(sd, preserving_proto_field_name=True,
                                                      always_print_fields_with_no_presence=True)
        for name, sig in self.signatures.items():
            if name not in out:   # not in the proto (should not happen): describe from the loaded function
                out[name] = {
                    "inputs": {k: {"dtype": _dtype_json(s.dtype), "tensor_shape": _shape_json(s.shape),
                                   "name": f"{name}_{k}:0"} for k, s in sig.inputs.items()},
                    "outputs": {k: {"dtype": _dtype_json(d), "tensor_shape": _shape_json(s), "name": k}
                                for k, (d, s) in sig.outputs.items()},
                    "method_name": sig.method_name}
        return out

    @staticmethod
    def _read_class_labels(path):
        """Class names for :classify when the signature has no `classes` output: assets/labels.txt (one per line)
        or the `labels` list of assets/task_meta.json (bertkit's classifier metadata)."""
        for d in ("assets.extra", "assets"):
            p = os.path.join(path, d, "labels.txt")
            if os.path.isfile(p):
                with open(p, encoding="utf-8") as f:
                    return [line.rstrip("\n") for line in f if line.strip()]
            p = os.path.join(path, d, "task_meta.json")
            if os.path.isfile(p):
                try:
                    with open(p, encoding="utf-8") as f:
                        labels = json.load(f).get("labels")
                    if isinstance(labels, list):
                        return [str(x) for x in labels]
                except (OSError, ValueError, AttributeError):
                    pass
        return None

    def get_signature(self, name):
        name = name or DEFAULT_SIGNATURE
        sig = self.signatures.get(name)
        if sig is None:
            raise InvalidArgument(f'Serving signature name: "{name}" not found in signature def '
                                  f'(available: {", ".join(sorted(self.signatures)) or "none"})')
        return sig

    def check_inputs(self, sig, arrays):
        for n, spec in sig.inputs.items():
            a = arrays[n]
            if not spec.shape.is_compatible_with(a.shape):
                raise InvalidArgument(f"input '{n}' has shape {list(a.shape)} but signature '{sig.name}' expects "
                                      f"{_shape_str(spec.shape)}")
        codec.check_id_shapes(arrays)

    def run(self, sig, arrays):
        """Call the signature (in an executor thread). arrays: {name: np.ndarray} -> {name: np.ndarray}."""
        feed = {}
        for n, spec in sig.inputs.items():
            feed[n] = tf.constant(arrays[n], dtype=spec.dtype)
        try:
            out = sig.fn(**feed)
        except (tf.errors.InvalidArgumentError, tf.errors.OutOfRangeError) as e:
            raise InvalidArgument(_clean_tf_error(e.message)) from None
        except (TypeError, ValueError) as e:
            raise InvalidArgument(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
        return {k: v.numpy() for k, v in out.items()}


def _clean_tf_error(message):
    """The op's own message, without the Python traceback TF 2 puts in front of graph errors."""
    kept, skipping = [], False
    for line in message.splitlines():
        if line.startswith("Graph execution error:"):
            continue
        if line.startswith("Detected at node"):
            skipping = True
            continue
        if skipping and (not line.strip() or line[:1].isspace() or line.strip() == "<stack traces unavailable>"):
            continue
        skipping = False
        kept.append(line)
    text = " ".join(" ".join(kept).split())
    text = re.sub(r"\s*\[\[\{\{node [^]]*\]\]", "", text)
    text = re.sub(r"\s*\[Op:[^]]*\]", "", text)
    return text.strip() or message


# ---------------------------------------------------------------- versions of all models


@dataclasses.dataclass
class VersionState:
    version: int
    state: str = "LOADING"        # LOADING | AVAILABLE | END
    error: str = ""
    servable: Servable = None
    attempts: int = 0
    stamp: tuple = None           # the version folder's files (name, mtime, size) at the last failed attempt
    failed_at: float = 0.0        # time.monotonic() of the last failed attempt


def list_version_dirs(base_path):
    """{version: path} for integer-named folders holding a saved_model.pb / .pbtxt."""
    out = {}
    try:
        names = os.listdir(base_path)
    except OSError:
        return out
    for name in names:
        if name.isdigit():
            p = os.path.join(base_path, name)
            if os.path.isfile(os.path.join(p, "saved_model.pb")) or os.path.isfile(
                    os.path.join(p, "saved_model.pbtxt")):
                out[int(name)] = p
    return out


class ModelManager:
    """Loads and unloads model versions by polling the base paths; thread-safe lookups."""

    MAX_LOAD_ATTEMPTS = 3

    def __init__(self, configs, poll_wait_seconds=1.0, loader=Servable):
        self._lock = threading.RLock()
        self._poll_lock = threading.Lock()
        self._configs = {c.name: c for c in configs}
        self._versions = {c.name: {} for c in configs}     # name -> {version: VersionState}
        self.poll_wait_seconds = poll_wait_seconds
        self._loader = loader
        self._stop = threading.Event()
        self._thread = None
        self.config_source = None        # (path, mtime) when configs come from --model_config_file

    # -- loading
    def poll_once(self):
        """Scan every base path once; load new versions, unload removed ones. Returns number of changes."""
        with self._poll_lock:
            changes = 0
            with self._lock:
                configs = list(self._configs.values())
            for cfg in configs:
                on_disk = list_version_dirs(cfg.base_path)
                wanted = cfg.wanted_versions(on_disk)
                with self._lock:
                    current = self._versions.setdefault(cfg.name, {})
                    for v in list(current):
                        if v not in wanted:
                            log.info("unloading model %s version %d", cfg.name, v)
                            del current[v]
                            changes += 1
                for v in sorted(wanted, reverse=True):      # newest first: it becomes the default soonest
                    with self._lock:
                        st = self._versions.get(cfg.name, {}).get(v)
                    if st is not None and st.state == "AVAILABLE":
                        continue
                    if st is not None and st.state == "END" and not self._retry_due(st, on_disk[v]):
                        continue      # failed before, nothing changed on disk and no back-off elapsed
                    if st is None:
                        st = VersionState(v)
                        with self._lock:
                            self._versions.setdefault(cfg.name, {})[v] = st
                    changes += self._load(cfg, st, on_disk[v])
            return changes

    RETRY_BACKOFF_SECONDS = 30.0

    def _retry_due(self, st, path):
        """A failed version is tried again at the next poll when any file in its folder changed (a version whose
        files appear in steps: saved_model.pb first, the variables later), else after a back-off that doubles with
        each attempt (at most MAX_LOAD_ATTEMPTS attempts with nothing changed)."""
        if _tree_stamp(path) != st.stamp:
            return True
        if st.attempts >= self.MAX_LOAD_ATTEMPTS:
            return False
        return time.monotonic() - st.failed_at >= self.RETRY_BACKOFF_SECONDS * 2 ** (st.attempts - 1)

    def _load(self, cfg, st, path):
        st.state, st.attempts = "LOADING", st.attempts + 1
        t0 = time.time()
        try:
            servable = self._loader(cfg.name, st.version, path)
        except Exception as e:  # noqa: BLE001 - reported in the model status
            st.state, st.error, st.stamp = "END", f"{type(e).__name__}: {e}".splitlines()[0], _tree_stamp(path)
            st.failed_at = time.monotonic()
            log.error("model %s version %d: failed to load from %s: %s", cfg.name, st.version, path, st.error)
            return 1
        st.servable, st.state, st.error = servable, "AVAILABLE", ""
        log.info("model %s version %d loaded from %s in %.1fs", cfg.name, st.version, path, time.time() - t0)
        return 1

    def set_configs(self, configs):
        """Replace the model list (re-read --model_config_file); removed models are unloaded at once."""
        with self._lock:
            self._configs = {c.name: c for c in configs}
            for name in list(self._versions):
                if name not in self._configs:
                    del self._versions[name]
        self.poll_once()

    def start_polling(self, config_reader=None, config_poll_seconds=0):
        if self.poll_wait_seconds <= 0 and not (config_reader and config_poll_seconds > 0):
            return

        def loop():
            last_config = time.monotonic()
            period = min(p for p in (self.poll_wait_seconds, config_poll_seconds) if p > 0)
            while not self._stop.wait(period):
                try:
                    if config_reader and config_poll_seconds > 0 and \
                            time.monotonic() - last_config >= config_poll_seconds:
                        last_config = time.monotonic()
                        new = config_reader()
                        if new is not None:
                            self.set_configs(new)
                    if self.poll_wait_seconds > 0:
                        self.poll_once()
                except Exception:  # noqa: BLE001 - keep polling
                    log.exception("error while polling for model versions")

        self._thread = threading.Thread(target=loop, name="model-version-poll", daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)

    # -- lookups
    def model_names(self):
        with self._lock:
            return sorted(self._configs)

    def _model(self, name):
        with self._lock:
            if name not in self._configs:
                return None, None
            return self._configs[name], dict(self._versions.get(name, {}))

    def _resolve_version(self, name, version, label, cfg):
        if label is not None:
            if label not in cfg.version_labels:
                raise NotFound(f"Unrecognized servable version label: {label}")
            return cfg.version_labels[label]
        return version

    def get_servable(self, name, version=None, label=None):
        cfg, versions = self._model(name)
        spec = (f"Specific({name}, {version})" if version is not None else
                f"Label({name}, {label})" if label is not None else f"Latest({name})")
        if cfg is None:
            raise NotFound(f"Servable not found for request: {spec}")
        v = self._resolve_version(name, version, label, cfg)
        if v is None:
            avail = [s for s in versions.values() if s.state == "AVAILABLE"]
            if not avail:
                raise NotFound(f"Servable not found for request: {spec}")
            return max(avail, key=lambda s: s.version).servable
        st = versions.get(v)
        if st is None or st.state != "AVAILABLE":
            raise NotFound(f"Servable not found for request: {spec}")
        return st.servable

    def status(self, name, version=None, label=None):
        cfg, versions = self._model(name)
        if cfg is None:
            raise NotFound(f"Could not find any versions of model {name}")
        v = self._resolve_version(name, version, label, cfg)
        if v is not None:
            if v not in versions:
                raise NotFound(f"Could not find version {v} of model {name}")
            states = [versions[v]]
        else:
            states = sorted(versions.values(), key=lambda s: -s.version)
            if not states:
                raise NotFound(f"Could not find any versions of model {name}")
        return {"model_version_status": [
            {"version": str(s.version), "state": s.state,
             "status": {"error_code": "OK" if s.state != "END" else "UNKNOWN", "error_message": s.error}}
            for s in states]}

    def loaded_versions(self, name):
        _, versions = self._model(name)
        return sorted(v for v, s in (versions or {}).items() if s.state == "AVAILABLE")


def _tree_stamp(path):
    """(relative name, mtime_ns, size) of every file under a version folder, sorted: changes when any file does."""
    out = []
    for root, _, files in os.walk(path):
        for name in files:
            p = os.path.join(root, name)
            try:
                st = os.stat(p)
            except OSError:
                continue
            out.append((os.path.relpath(p, path), st.st_mtime_ns, st.st_size))
    return tuple(sorted(out))


def single_model_config(name, base_path):
    return ModelSpecConfig(name=name, base_path=os.path.abspath(os.path.expanduser(base_path)))


def model_configs(model_config_file=None, model_base_path=None, model_name="default"):
    """serve.py's models: those of a models.config file, or one named `model_name` at `model_base_path`. A base path
    that is not a directory is a UserError; one without version folders yet is logged (the server waits for one)."""
    if model_config_file:
        configs, flag = model_config.read_model_config_file(model_config_file), "model_config_file"
    else:
        configs, flag = [single_model_config(model_name, model_base_path)], "model_base_path"
    for c in configs:
        if not os.path.isdir(c.base_path):
            raise bertkit_errors.UserError(f"--{flag}: model '{c.name}': base path {c.base_path} is not a directory")
        if not list_version_dirs(c.base_path):
            log.warning("model '%s': no version folders (<base_path>/<integer>/saved_model.pb) in %s yet; "
                        "waiting for one", c.name, c.base_path)
    return configs


def config_file_reader(path):
    """A function returning the models of the models.config file at `path` when it changed since the last call (or
    since now), else None; a file that cannot be read is logged and kept out (None)."""
    last = [os.path.getmtime(path)]

    def read():
        try:
            mtime = os.path.getmtime(path)
            if mtime == last[0]:
                return None
            last[0] = mtime
            return model_config.read_model_config_file(path)
        except (OSError, bertkit_errors.UserError) as e:
            log.error("not reloading %s: %s", path, e)
            return None
    return read
