"""A local, TF-Serving-compatible REST server for bertkit SavedModels (the server behind `serve.py`).

Models live in TF Serving's layout, `base_path/<version>/saved_model.pb`. `ModelManager` loads them (in a
background thread), polls the base paths for new or removed version folders, and answers status/metadata.
`make_app` builds the aiohttp application speaking TF Serving's REST API:

    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]            model status
    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]/metadata   signature defs
    POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict    row (`instances`) or columnar (`inputs`)
    POST /v1/models/{name}[/versions/{v}|/labels/{l}]:classify   tf.Example features -> [[label, score], ...]
    POST /v1/models/{name}[/versions/{v}|/labels/{l}]:regress    tf.Example features -> [value, ...]

Model calls run in a thread executor, never on the event loop; with batching on they go through
`serving.batching.Batcher`. `start_server_thread` runs the whole server in a background thread (tests, benchmarks).
"""
import asyncio
import concurrent.futures
import dataclasses
import json
import logging
import os
import re
import threading
import time

import aiohttp
import numpy as np

from serving import batching
from serving import codec
from serving.codec import InvalidArgument, NotFound, ServingError
from serving.model_config import ModelSpecConfig

log = logging.getLogger("bertkit.serving")

DEFAULT_SIGNATURE = "serving_default"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
PREDICT_METHOD = "tensorflow/serving/predict"

_tf = None


def _import_tf():
    """TensorFlow, with tensorflow_text registered (bertkit SavedModels use its ops)."""
    global _tf
    if _tf is None:
        import tensorflow as tf
        try:
            import tensorflow_text  # noqa: F401  (registers the ops the SavedModels need)
        except ImportError:  # pragma: no cover - listed in requirements.txt
            log.warning("tensorflow_text is not installed; SavedModels using its ops will fail to load")
        _tf = tf
    return _tf


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
    from tensorflow.core.framework import types_pb2
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
        tf = _import_tf()
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
            from tensorflow.core.protobuf import saved_model_pb2
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
        from google.protobuf import json_format
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
        tf = _tf
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


# ---------------------------------------------------------------- REST API

_PREDICT_RE = re.compile(r"/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?:(classify|regress|predict)",
                         re.IGNORECASE)
_STATUS_RE = re.compile(r"/v1/models(?:/([^/:]+))?(?:/versions/(\d+)|/labels/([^/:]+))?(/metadata)?",
                        re.IGNORECASE)


class ClientDisconnected(Exception):
    """The client closed the connection while its request body was being read."""


def _json_response(web, obj, status=200):
    return web.Response(body=codec.dumps(obj).encode("utf-8"), status=status, content_type="application/json")


def _error_response(web, status, message):
    return _json_response(web, {"error": message}, status)


class RestApi:
    def __init__(self, manager, executor, batcher=None, max_request_bytes=64 << 20):
        self.manager = manager
        self.executor = executor
        self.batcher = batcher
        self.max_request_bytes = max_request_bytes

    def make_app(self):
        from aiohttp import web
        self._web = web
        app = web.Application(client_max_size=self.max_request_bytes)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request):
        web = self._web
        try:
            return await self._dispatch(request)
        except ServingError as e:
            return _error_response(web, e.status, str(e))
        except web.HTTPRequestEntityTooLarge:
            return _error_response(web, 413, f"Request body is larger than --max_request_bytes="
                                              f"{self.max_request_bytes}")
        except web.HTTPException as e:
            return _error_response(web, e.status, e.reason)
        except ClientDisconnected as e:  # nobody to answer: one line, no traceback
            log.info("%s %s: %s", request.method, request.path, e)
            return _error_response(web, 400, str(e))
        except RecursionError:
            return _error_response(web, 400, "JSON value nested too deeply")
        except Exception as e:  # noqa: BLE001 - a bug: answer 500, keep serving
            log.exception("internal error on %s %s", request.method, request.path)
            return _error_response(web, 500, f"Internal error: {type(e).__name__}: {e}")

    async def _dispatch(self, request):
        web = self._web
        path, method = request.path, request.method
        m = _PREDICT_RE.fullmatch(path)
        if m and method == "POST":
            name, version, label, verb = m.groups()
            body = await self._read_body(request)
            servable = self.manager.get_servable(name, int(version) if version else None, label)
            handler = {"predict": self._predict, "classify": self._classify, "regress": self._regress}[verb.lower()]
            result = await handler(servable, body)
            if isinstance(result, bytes):   # already serialized (large responses, off the event loop)
                return web.Response(body=result, content_type="application/json")
            return _json_response(web, result)
        m = _STATUS_RE.fullmatch(path)
        if m and method == "GET":
            name, version, label, metadata = m.groups()
            if not name:
                raise InvalidArgument("Missing model name in request.")
            version = int(version) if version else None
            if metadata:
                servable = self.manager.get_servable(name, version, label)
                return _json_response(web, {
                    "model_spec": {"name": name, "signature_name": "", "version": str(servable.version)},
                    "metadata": {"signature_def": {"signature_def": servable.metadata}}})
            return _json_response(web, self.manager.status(name, version, label))
        if path.startswith("/v1/"):
            raise InvalidArgument(f"Malformed request: {method} {path}")
        raise NotFound(f"Not found: {method} {path} (the API is under /v1/models/...)")

    async def _read_body(self, request):
        if request.content_length is not None and request.content_length > self.max_request_bytes:
            raise codec.RequestTooLarge(f"Request body of {request.content_length} bytes is larger than "
                                        f"--max_request_bytes={self.max_request_bytes}")
        try:
            return await request.read()
        except (ConnectionError, aiohttp.ClientPayloadError, asyncio.IncompleteReadError) as e:
            raise ClientDisconnected(f"client disconnected before sending the whole body ({e})") from None

    async def _parse(self, body):
        if len(body) > 256 << 10:   # big bodies: parse off the event loop
            return await asyncio.get_running_loop().run_in_executor(self.executor, codec.parse_json_body, body)
        return codec.parse_json_body(body)

    @staticmethod
    def _signature_name(doc):
        name = doc.get("signature_name", "")
        if not isinstance(name, str):
            raise InvalidArgument("'signature_name' key must be a string value.")
        return name

    async def _call(self, servable, sig, arrays):
        """Run the signature off the event loop, through the batcher when it applies."""
        servable.check_inputs(sig, arrays)
        loop = asyncio.get_running_loop()
        if self.batcher is not None and self.batcher.can_batch(arrays) and all(
                s.shape.rank is None or (s.shape.rank >= 1 and s.shape[0] is None) for s in sig.inputs.values()):
            key = (servable.model_name, servable.version, id(servable), sig.name)
            return await self.batcher.submit(key, lambda a: servable.run(sig, a), arrays)
        return await loop.run_in_executor(self.executor, servable.run, sig, arrays)

    async def _predict(self, servable, body):
        doc = await self._parse(body)
        sig = servable.get_signature(self._signature_name(doc))
        fmt, arrays = codec.decode_predict_request(doc, sig.np_input_dtypes())
        output_filter = doc.get("output_filter")
        if output_filter is not None:
            if not isinstance(output_filter, list) or not all(isinstance(x, str) for x in output_filter):
                raise InvalidArgument("'output_filter' must be a list of output names")
            unknown = sorted(set(output_filter) - set(sig.outputs))
            if unknown:
                raise InvalidArgument(f"output tensor alias not found in signature: {', '.join(unknown)}")
        outputs = await self._call(servable, sig, arrays)
        if output_filter:
            outputs = {k: v for k, v in outputs.items() if k in output_filter}
        size = sum(np.size(v) for v in outputs.values())
        if size > 20000:   # e.g. sequence_output: convert and serialize off the event loop
            return await asyncio.get_running_loop().run_in_executor(
                self.executor, lambda: codec.dumps(codec.encode_predict_response(outputs, fmt)).encode("utf-8"))
        return codec.encode_predict_response(outputs, fmt)

    def _examples_signature(self, servable, doc, method):
        name = self._signature_name(doc)
        if name:
            sig = servable.get_signature(name)
        else:
            sigs = servable.signatures
            candidates = [DEFAULT_SIGNATURE] if sigs.get(DEFAULT_SIGNATURE) and \
                sigs[DEFAULT_SIGNATURE].method_name == method else []
            candidates += sorted(n for n, s in sigs.items() if s.method_name == method)
            candidates += ["serve_examples"]
            candidates += sorted(n for n, s in sigs.items() if list(s.inputs) in (["examples"], ["inputs"]))
            sig = next((sigs[n] for n in candidates if n in sigs), None)
            if sig is None:
                raise InvalidArgument(f"no signature of this model takes serialized tf.Example input (method "
                                      f"{method}, or 'serve_examples'); name one with 'signature_name'")
        if len(sig.inputs) != 1 or next(iter(sig.inputs.values())).dtype.name != "string":
            raise InvalidArgument(f"signature '{sig.name}' does not take a single string tensor of serialized "
                                  f"tf.Example protos (its inputs: {', '.join(sorted(sig.inputs))})")
        return sig

    async def _run_examples(self, servable, body, method):
        doc = await self._parse(body)
        sig = self._examples_signature(servable, doc, method)
        serialized = codec.decode_examples(doc)
        outputs = await self._call(servable, sig, {next(iter(sig.inputs)): serialized})
        return sig, outputs, len(serialized)

    async def _classify(self, servable, body):
        sig, outputs, n = await self._run_examples(servable, body, CLASSIFY_METHOD)
        scores = next((outputs[k] for k in ("scores", "probabilities") if k in outputs), None)
        if scores is None:
            floats = [k for k, v in outputs.items() if v.dtype.kind == "f"]
            scores = outputs[floats[0]] if len(floats) == 1 else None
        classes = outputs.get("classes")
        if scores is None and classes is None:
            raise InvalidArgument(f"signature '{sig.name}' has no 'scores'/'probabilities' or 'classes' output "
                                  f"(outputs: {', '.join(sorted(outputs))})")
        if scores is not None:
            scores = np.asarray(scores, dtype=np.float32)
            scores = scores.reshape(n, -1) if scores.size else np.zeros((n, 0), np.float32)
        if classes is not None:
            classes = np.asarray(classes).reshape(n, -1)
        num_classes = (scores if scores is not None else classes).shape[1]
        if scores is None:
            scores = np.zeros((n, num_classes), np.float32)
        if classes is None:
            labels = servable.class_labels
            labels = labels if labels and len(labels) == num_classes else [""] * num_classes
            classes = np.array([[x.encode("utf-8") for x in labels]] * n, dtype=object).reshape(n, num_classes)
        score_json = codec.array_to_json(scores, "scores")
        label_json = codec.array_to_json(classes, "classes")
        return {"results": [[[label_json[i][j], score_json[i][j]] for j in range(num_classes)] for i in range(n)]}

    async def _regress(self, servable, body):
        sig, outputs, n = await self._run_examples(servable, body, REGRESS_METHOD)
        value = outputs.get("outputs")
        if value is None:
            floats = [k for k, v in outputs.items() if v.dtype.kind == "f"]
            if len(floats) != 1:
                raise InvalidArgument(f"signature '{sig.name}' has no single regression output 'outputs' "
                                      f"(outputs: {', '.join(sorted(outputs))})")
            value = outputs[floats[0]]
        value = np.asarray(value)
        if value.size != n:
            raise InvalidArgument(f"signature '{sig.name}': expected one regression value per example, got shape "
                                  f"{list(value.shape)}")
        return {"results": codec.array_to_json(value.reshape(n).astype(np.float32), "outputs")}


# ---------------------------------------------------------------- running it


@dataclasses.dataclass
class ServerOptions:
    host: str = "127.0.0.1"
    port: int = 8501
    enable_batching: bool = False
    max_batch_size: int = 32
    batch_timeout_micros: int = 1000
    num_batch_threads: int = 0             # merged calls in flight per queue; 0 = cpu count (TF Serving's default)
    max_request_bytes: int = 64 << 20
    rest_api_num_threads: int = 0          # executor threads; 0 = max(4, cpu count)
    file_system_poll_wait_seconds: float = 1.0


class ServerHandle:
    """A server running in a background thread (`start_server_thread`)."""

    def __init__(self):
        self.loop = None
        self.port = None
        self.manager = None
        self.batcher = None
        self.thread = None
        self._stopped = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def stop(self):
        if self.loop and self._stopped and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._stopped.set)
        if self.thread:
            self.thread.join(timeout=30)
        if self.manager:
            self.manager.stop()


def build(manager, options):
    executor = concurrent.futures.ThreadPoolExecutor(
        max_workers=options.rest_api_num_threads or max(4, os.cpu_count() or 1), thread_name_prefix="model-call")
    batcher = None
    if options.enable_batching:
        batcher = batching.Batcher(executor, options.max_batch_size, options.batch_timeout_micros,
                                   options.num_batch_threads)
    api = RestApi(manager, executor, batcher, options.max_request_bytes)
    return api, executor, batcher


async def serve(manager, options, ready=None, stop_event=None, handle=None):
    """Run until `stop_event` (an asyncio.Event) is set. `ready(port)` is called once listening."""
    from aiohttp import web
    api, executor, batcher = build(manager, options)
    if handle is not None:
        handle.batcher = batcher
    runner = web.AppRunner(api.make_app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, options.host, options.port, reuse_address=True)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    log.info("REST API listening on http://%s:%d", options.host, port)
    if ready:
        ready(port)
    try:
        await (stop_event or asyncio.Event()).wait()
    finally:
        if batcher:
            await batcher.close()
        await runner.cleanup()
        executor.shutdown(wait=False, cancel_futures=True)


def start_server_thread(configs, options=None, **kwargs):
    """Load `configs` (list of ModelSpecConfig), start polling and serve from a background thread.
    options.port=0 picks a free port; returns a ServerHandle (.port, .url, .manager, .batcher, .stop())."""
    options = options or ServerOptions(port=0, **kwargs)
    handle = ServerHandle()
    manager = ModelManager(configs, options.file_system_poll_wait_seconds)
    manager.poll_once()
    manager.start_polling()
    handle.manager = manager
    started = threading.Event()
    errors = []

    def run():
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        handle.loop = loop
        handle._stopped = asyncio.Event()

        def ready(port):
            handle.port = port
            started.set()
        try:
            loop.run_until_complete(serve(manager, options, ready, handle._stopped, handle))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
            started.set()
        finally:
            loop.close()

    handle.thread = threading.Thread(target=run, name="rest-server", daemon=True)
    handle.thread.start()
    started.wait(60)
    if errors:
        manager.stop()
        raise errors[0]
    return handle


def single_model_config(name, base_path):
    return ModelSpecConfig(name=name, base_path=os.path.abspath(os.path.expanduser(base_path)))
