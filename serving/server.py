"""A local, TF-Serving-compatible REST server for bertkit SavedModels (the server behind `serve.py`).

`RestApi.make_app` builds the aiohttp application speaking TF Serving's REST API over the models of a
`serving.manager.ModelManager` (which loads and polls the versions):

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
import logging
import os
import re
import signal
import threading

import aiohttp
import numpy as np
from aiohttp import web

from serving import batching
from serving import codec
from serving.codec import InvalidArgument, NotFound, ServingError
from serving.manager import CLASSIFY_METHOD, DEFAULT_SIGNATURE, REGRESS_METHOD, ModelManager

log = logging.getLogger("bertkit.serving")

_PREDICT_RE = re.compile(r"/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?:(classify|regress|predict)",
                         re.IGNORECASE)
_STATUS_RE = re.compile(r"/v1/models(?:/([^/:]+))?(?:/versions/(\d+)|/labels/([^/:]+))?(/metadata)?",
                        re.IGNORECASE)


class ClientDisconnected(Exception):
    """The client closed the connection while its request body was being read."""


def _json_response(obj, status=200):
    return web.Response(body=codec.dumps(obj).encode("utf-8"), status=status, content_type="application/json")


def _error_response(status, message):
    return _json_response({"error": message}, status)


class RestApi:
    def __init__(self, manager, executor, batcher=None, max_request_bytes=64 << 20):
        self.manager = manager
        self.executor = executor
        self.batcher = batcher
        self.max_request_bytes = max_request_bytes

    def make_app(self):
        app = web.Application(client_max_size=self.max_request_bytes)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request):
        try:
            return await self._dispatch(request)
        except ServingError as e:
            return _error_response(e.status, str(e))
        except web.HTTPRequestEntityTooLarge:
            return _error_response(413, f"Request body is larger than --max_request_bytes="
                                              f"{self.max_request_bytes}")
        except web.HTTPException as e:
            return _error_response(e.status, e.reason)
        except ClientDisconnected as e:  # nobody to answer: one line, no traceback
            log.info("%s %s: %s", request.method, request.path, e)
            return _error_response(400, str(e))
        except RecursionError:
            return _error_response(400, "JSON value nested too deeply")
        except Exception as e:  # noqa: BLE001 - a bug: answer 500, keep serving
            log.exception("internal error on %s %s", request.method, request.path)
            return _error_response(500, f"Internal error: {type(e).__name__}: {e}")

    async def _dispatch(self, request):
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
            return _json_response(result)
        m = _STATUS_RE.fullmatch(path)
        if m and method == "GET":
            name, version, label, metadata = m.groups()
            if not name:
                raise InvalidArgument("Missing model name in request.")
            version = int(version) if version else None
            if metadata:
                servable = self.manager.get_servable(name, version, label)
                return _json_response({
                    "model_spec": {"name": name, "signature_name": "", "version": str(servable.version)},
                    "metadata": {"signature_def": {"signature_def": servable.metadata}}})
            return _json_response(self.manager.status(name, version, label))
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


def serve_until_signal(manager, options, ready=None):
    """Serve in this thread until SIGINT or SIGTERM (serve.py). `ready(port)` is called once listening; OSError
    when the address cannot be bound."""
    async def run():
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(manager, options, ready, stop)

    asyncio.run(run())


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
