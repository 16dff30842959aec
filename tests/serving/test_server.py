"""The TF-Serving-compatible REST server on loopback: endpoints, errors, batching, concurrency, version pick-up."""
import asyncio
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from serving import codec, model_config, server
from serving.manager import ModelManager
from serving.model_config import ModelSpecConfig

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def http(method, url, body=None, raw=None, timeout=30):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        payload = e.read()
        assert e.headers.get("Content-Type", "").startswith("application/json"), payload
        return e.code, json.loads(payload)


def expected_probs(text, version):
    n = len(text)
    logits = np.array([10.0 - n, n, 3.0 * version])
    e = np.exp(logits - logits.max())
    return e / e.sum()


def config_text(root):
    return f"""
# two models; toy has a 'stable' label
model_config_list {{
  config {{
    name: 'toy'
    base_path: '{root}/toy'
    model_platform: "tensorflow"
    model_version_policy {{ all {{}} }}
    version_labels {{ key: 'stable' value: 1 }}
  }}
  config: {{ name: "echo", base_path: "{root}/echo" }}
}}
"""


@pytest.fixture(scope="module")
def srv(model_root, tmp_path_factory):
    cfg_path = tmp_path_factory.mktemp("cfg") / "models.config"
    cfg_path.write_text(config_text(model_root))
    configs = model_config.read_model_config_file(str(cfg_path))
    handle = server.start_server_thread(configs, max_request_bytes=64 * 1024, file_system_poll_wait_seconds=0)
    yield handle
    handle.stop()


# ---------------------------------------------------------------- models.config parsing


def test_model_config_parser(model_root):
    configs = model_config.model_configs_from_text(config_text(model_root))
    assert [c.name for c in configs] == ["toy", "echo"]
    assert configs[0].version_labels == {"stable": 1}
    assert configs[0].base_path == f"{model_root}/toy"
    latest = model_config.model_configs_from_text(
        "model_config_list { config { name: 'a' base_path: '/x' "
        "model_version_policy { latest { num_versions: 2 } } } }")[0]
    assert latest.wanted_versions([1, 5, 3]) == {3, 5}
    specific = model_config.model_configs_from_text(
        "model_config_list: { config < name: 'a' base_path: '/x' "
        "model_version_policy { specific { versions: 1 versions: 3 } } > }")[0]
    assert specific.wanted_versions([1, 2, 3]) == {1, 3}
    for bad, msg in [("model_config_list { config { name: 'a' } }", "base_path"),
                     ("model_config_list { config { name: 'a' base_path: '/x' ", "missing '}'"),
                     ("model_config_list { config { name 'a' } }", ":5" if False else "expected ':'"),
                     ("model_config_list { config { name: 'a' base_path: '/x' model_platform: 'pytorch' } }",
                      "pytorch"),
                     ("model_config_list {}", "no config")]:
        with pytest.raises(model_config.bertkit_errors.UserError, match=msg):
            model_config.model_configs_from_text(bad, "m.config")
    with pytest.raises(model_config.bertkit_errors.UserError, match=r"m.config:3: unexpected character"):
        model_config.model_configs_from_text("model_config_list {\n config {\n name: 'a' @ } }", "m.config")


# ---------------------------------------------------------------- status and metadata


def test_status(srv):
    status, body = http("GET", f"{srv.url}/v1/models/toy")
    assert status == 200
    assert body == {"model_version_status": [
        {"version": v, "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}} for v in ("2", "1")]}
    status, body = http("GET", f"{srv.url}/v1/models/toy/versions/1")
    assert status == 200 and [s["version"] for s in body["model_version_status"]] == ["1"]
    status, body = http("GET", f"{srv.url}/v1/models/toy/labels/stable")
    assert status == 200 and [s["version"] for s in body["model_version_status"]] == ["1"]
    status, body = http("GET", f"{srv.url}/v1/models/echo")
    assert status == 200 and body["model_version_status"][0]["state"] == "AVAILABLE"


def test_metadata(srv):
    status, body = http("GET", f"{srv.url}/v1/models/toy/metadata")
    assert status == 200
    assert body["model_spec"] == {"name": "toy", "signature_name": "", "version": "2"}
    sigs = body["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", "serve_ids", "serve_examples"} <= set(sigs)
    text_a = sigs["serving_default"]["inputs"]["text_a"]
    assert text_a["dtype"] == "DT_STRING"
    assert text_a["tensor_shape"] == {"dim": [{"size": "-1", "name": ""}], "unknown_rank": False}
    assert sigs["serving_default"]["method_name"] == "tensorflow/serving/predict"
    probs = sigs["serving_default"]["outputs"]["probabilities"]
    assert probs["dtype"] == "DT_FLOAT" and [d["size"] for d in probs["tensor_shape"]["dim"]] == ["-1", "3"]
    assert sigs["serve_ids"]["inputs"]["input_ids"]["dtype"] == "DT_INT32"
    status, body = http("GET", f"{srv.url}/v1/models/toy/versions/1/metadata")
    assert status == 200 and body["model_spec"]["version"] == "1"
    status, body = http("GET", f"{srv.url}/v1/models/toy/labels/stable/metadata")
    assert status == 200 and body["model_spec"]["version"] == "1"


# ---------------------------------------------------------------- predict


def test_predict_row_format(srv):
    texts = ["hi", "a longer sentence", "ünïcode"]
    status, body = http("POST", f"{srv.url}/v1/models/toy:predict", {"instances": texts})
    assert status == 200, body
    preds = body["predictions"]
    assert len(preds) == 3
    for text, p in zip(texts, preds):
        assert set(p) == {"logits", "probabilities", "label_id", "label", "version"}
        np.testing.assert_allclose(p["probabilities"], expected_probs(text, 2), rtol=1e-5, atol=1e-6)
        assert p["version"] == 2
        assert p["label"] == ["short", "long", "versioned"][p["label_id"]]
    # float32 values are written in their shortest form: 8.0 for length-2 logits, not 8.000000xxx
    assert preds[0]["logits"] == [8.0, 2.0, 6.0]
    # objects keyed by input name are accepted too, and versions / labels route to the right model
    status, body = http("POST", f"{srv.url}/v1/models/toy/versions/1:predict",
                        {"instances": [{"text_a": "hi"}], "signature_name": "serving_default"})
    assert status == 200 and body["predictions"][0]["version"] == 1
    status, body = http("POST", f"{srv.url}/v1/models/toy/labels/stable:predict", {"instances": ["hi"]})
    assert status == 200 and body["predictions"][0]["version"] == 1
    # a large response (serialized off the event loop) is the same JSON
    texts = ["x" * (i % 13) for i in range(2500)]
    status, body = http("POST", f"{srv.url}/v1/models/toy:predict", {"instances": texts})
    assert status == 200 and len(body["predictions"]) == 2500
    np.testing.assert_allclose(body["predictions"][2499]["probabilities"], expected_probs(texts[2499], 2), rtol=1e-5)
    assert body["predictions"][12]["logits"] == [-2.0, 12.0, 6.0]


def test_predict_columnar_and_output_filter(srv):
    status, body = http("POST", f"{srv.url}/v1/models/toy:predict",
                        {"inputs": {"text_a": ["hi", "hello"]}, "output_filter": ["label", "version"]})
    assert status == 200, body
    assert body == {"outputs": {"label": ["short", "versioned"], "version": [2, 2]}}
    # a single output is written without its name
    status, body = http("POST", f"{srv.url}/v1/models/toy:predict",
                        {"inputs": ["hi"], "output_filter": ["label_id"]})
    assert body == {"outputs": [0]}
    status, body = http("POST", f"{srv.url}/v1/models/toy:predict",
                        {"instances": ["hi"], "output_filter": ["label_id"]})
    assert body == {"predictions": [0]}
    # serve_ids: several int inputs in row format
    inst = [{"input_ids": [101, 7, 102, 0], "input_mask": [1, 1, 1, 0], "segment_ids": [0, 0, 0, 0]}]
    status, body = http("POST", f"{srv.url}/v1/models/toy:predict", {"signature_name": "serve_ids", "instances": inst})
    assert status == 200, body
    np.testing.assert_allclose(body["predictions"][0]["probabilities"], expected_probs("abc", 2), rtol=1e-5)
    # columnar input where one input has no batch dimension
    status, body = http("POST", f"{srv.url}/v1/models/echo:predict",
                        {"signature_name": "scale", "inputs": {"x": [[1.5, 2.0], [0.1, -1.0]], "k": 2.0}})
    assert status == 200, body
    assert body == {"outputs": [[3.0, 4.0], [0.2, -2.0]]}


def test_predict_binary_values(srv):
    raw = bytes([0, 255, 1, 200])
    status, body = http("POST", f"{srv.url}/v1/models/echo:predict",
                        {"instances": [{"b64": base64.b64encode(raw).decode()}, "text"]})
    assert status == 200, body
    p = body["predictions"]
    # outputs named *_bytes come back base64-encoded
    assert p[0] == {"data_bytes": {"b64": base64.b64encode(raw).decode()}, "n": 4}
    assert p[1] == {"data_bytes": {"b64": base64.b64encode(b"text").decode()}, "n": 4}
    status, body = http("POST", f"{srv.url}/v1/models/echo:predict", {"instances": [{"b64": "not base64!"}]})
    assert status == 400 and "base64" in body["error"]


# ---------------------------------------------------------------- classify / regress


def test_classify(srv):
    status, body = http("POST", f"{srv.url}/v1/models/toy:classify",
                        {"examples": [{"text_a": "hi"}, {"text_a": "a longer sentence"}]})
    assert status == 200, body
    results = body["results"]
    assert len(results) == 2
    for text, res in zip(["hi", "a longer sentence"], results):
        assert [label for label, _ in res] == ["short", "long", "versioned"]   # from assets/labels.txt
        np.testing.assert_allclose([s for _, s in res], expected_probs(text, 2), rtol=1e-5, atol=1e-6)
    # context features are merged into every example
    status, body = http("POST", f"{srv.url}/v1/models/toy/versions/1:classify",
                        {"context": {"text_a": "hello"}, "examples": [{}, {}]})
    assert status == 200, body
    np.testing.assert_allclose([s for _, s in body["results"][1]], expected_probs("hello", 1), rtol=1e-5)
    # a bad tf.Example (missing feature) is a 400 from the model
    status, body = http("POST", f"{srv.url}/v1/models/toy:classify", {"examples": [{"other": 1}]})
    assert status == 400 and "text_a" in body["error"] and "Detected at node" not in body["error"], body
    status, body = http("POST", f"{srv.url}/v1/models/toy:classify", {"examples": []})
    assert status == 400
    status, body = http("POST", f"{srv.url}/v1/models/toy:classify", {"instances": ["x"]})
    assert status == 400 and "examples" in body["error"]


def test_regress(srv):
    status, body = http("POST", f"{srv.url}/v1/models/echo:regress",
                        {"signature_name": "regress", "context": {"bias": 0.5}, "examples": [{"x": 1.0}, {"x": 2.0}]})
    assert status == 200, body
    assert body == {"results": [2.5, 4.5]}


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("path,payload,status,fragment", [
    ("/v1/models/nope:predict", {"instances": ["x"]}, 404, "Servable not found"),
    ("/v1/models/toy/versions/7:predict", {"instances": ["x"]}, 404, "Specific(toy, 7)"),
    ("/v1/models/toy/labels/canary:predict", {"instances": ["x"]}, 404, "canary"),
    ("/v1/models/toy:predict", {"signature_name": "nope", "instances": ["x"]}, 400, "nope"),
    ("/v1/models/toy:predict", {"instances": [{"text_b": "x"}]}, 400, "text_b"),
    ("/v1/models/toy:predict", {"inputs": {"text_a": ["x"], "extra": [1]}}, 400, "extra"),
    ("/v1/models/toy:predict", {"signature_name": "serve_ids", "inputs": {"input_ids": [[1]]}}, 400,
     "Missing named input"),
    ("/v1/models/toy:predict", {"instances": [1, 2]}, 400, "expected type string"),
    ("/v1/models/toy:predict", {"signature_name": "serve_ids", "instances": [
        {"input_ids": ["a"], "input_mask": [1], "segment_ids": [0]}]}, 400, "int32"),
    ("/v1/models/toy:predict", {"signature_name": "serve_ids", "instances": [
        {"input_ids": [1, 2], "input_mask": [1, 1], "segment_ids": [0, 0]},
        {"input_ids": [1, 2, 3], "input_mask": [1, 1, 1], "segment_ids": [0, 0, 0]}]}, 400, "input 'input_ids'"),
    ("/v1/models/toy:predict", {"signature_name": "serve_ids", "inputs": {
        "input_ids": [1, 2], "input_mask": [1, 1], "segment_ids": [0, 0]}}, 400, "shape"),
    ("/v1/models/toy:predict", {"instances": [["a", "b"], ["c"]]}, 400, "input 'text_a'"),
    ("/v1/models/toy:predict", {"instances": []}, 400, "instances"),
    ("/v1/models/toy:predict", {"signature_name": 3, "instances": ["x"]}, 400, "signature_name"),
    ("/v1/models/toy:predict", {"instances": ["x"], "inputs": ["x"]}, 400, "only one"),
    ("/v1/models/toy:predict", {"text_a": ["x"]}, 400, "Missing 'inputs' or 'instances'"),
    ("/v1/models/toy:predict", {"instances": ["x"], "output_filter": ["nope"]}, 400, "nope"),
])
def test_predict_errors(srv, path, payload, status, fragment):
    got_status, body = http("POST", srv.url + path, payload)
    assert got_status == status, body
    assert set(body) == {"error"} and fragment in body["error"]


def test_protocol_errors(srv):
    status, body = http("POST", f"{srv.url}/v1/models/toy:predict", raw=b'{"instances": [')
    assert status == 400 and body["error"].startswith("JSON Parse error")
    status, body = http("POST", f"{srv.url}/v1/models/toy:predict", raw=b"[1, 2]")
    assert status == 400 and "object" in body["error"]
    status, body = http("POST", f"{srv.url}/v1/models/toy:predict", raw=b"")
    assert status == 400 and "empty" in body["error"]
    status, body = http("GET", f"{srv.url}/v1/models/nope")
    assert status == 404 and "nope" in body["error"]
    status, body = http("GET", f"{srv.url}/v1/models/toy/versions/9")
    assert status == 404
    status, body = http("GET", f"{srv.url}/v1/models/nope/metadata")
    assert status == 404
    status, body = http("GET", f"{srv.url}/v1/models/toy:predict")
    assert status == 400 and "Malformed request" in body["error"]
    status, body = http("GET", f"{srv.url}/v1/models")
    assert status == 400 and "Missing model name" in body["error"]
    status, body = http("GET", f"{srv.url}/elsewhere")
    assert status == 404 and "error" in body


def test_request_size_limit(srv):
    big = {"instances": ["x" * (80 * 1024)]}          # limit in this fixture: 64 KiB
    status, body = http("POST", f"{srv.url}/v1/models/toy:predict", big)
    assert status == 413 and "max_request_bytes" in body["error"]

    async def chunked():   # no Content-Length: the limit still applies while reading
        import aiohttp

        async def gen():
            yield b'{"instances": ["'
            for _ in range(20):
                yield b"x" * 8192
            yield b'"]}'
        async with aiohttp.ClientSession() as s:
            async with s.post(f"{srv.url}/v1/models/toy:predict", data=gen()) as r:
                return r.status, await r.json()
    status, body = asyncio.run(chunked())
    assert status == 413 and "error" in body
    status, body = http("GET", f"{srv.url}/v1/models/toy")     # and the server is still fine
    assert status == 200


# ---------------------------------------------------------------- concurrency and batching


async def _concurrent_predicts(url, texts, limit=32):
    import aiohttp
    sem = asyncio.Semaphore(limit)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async def one(text):
            async with sem:
                async with session.post(f"{url}/v1/models/toy:predict", json={"instances": [text]}) as r:
                    return r.status, await r.json()
        return await asyncio.gather(*(one(t) for t in texts))


def _check_answers(texts, answers, version=2):
    for text, (status, body) in zip(texts, answers):
        assert status == 200, body
        np.testing.assert_allclose(body["predictions"][0]["probabilities"], expected_probs(text, version),
                                   rtol=1e-5, atol=1e-6)


def test_concurrent_clients(srv):
    texts = ["x" * (i % 17) + f"#{i}" for i in range(32)]
    answers = asyncio.run(_concurrent_predicts(srv.url, texts))
    _check_answers(texts, answers)


def test_event_loop_free_during_model_call(srv, tmp_path):
    # the 'wait' signature writes `started`, then spins inside the model call until `release` exists: while it
    # runs, the server must still answer other requests (model calls run off the event loop)
    import threading
    started, release = str(tmp_path / "started"), str(tmp_path / "release")
    result = {}

    def slow_predict():
        result["answer"] = http("POST", f"{srv.url}/v1/models/echo:predict",
                                {"signature_name": "wait", "inputs": {"started": started, "release": release}},
                                timeout=120)
    t = threading.Thread(target=slow_predict, daemon=True)
    t.start()
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(started) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert os.path.exists(started), result
        status, body = http("GET", f"{srv.url}/v1/models/toy", timeout=20)
        assert status == 200 and body["model_version_status"][0]["state"] == "AVAILABLE"
        status, body = http("POST", f"{srv.url}/v1/models/toy:predict", {"instances": ["hi"]}, timeout=20)
        assert status == 200
        assert "answer" not in result      # the spinning call is still pending
    finally:
        open(release, "w").close()
    t.join(timeout=120)
    status, body = result["answer"]
    assert status == 200 and 0 < body["outputs"] < 5_000_000


def test_config_file_reload(model_root):
    configs = model_config.model_configs_from_text(f"model_config_list {{ config {{ name: 'toy' "
                                                   f"base_path: '{model_root}/toy' }} }}")
    manager = ModelManager(configs, poll_wait_seconds=0)
    manager.poll_once()
    assert manager.model_names() == ["toy"] and manager.loaded_versions("toy") == [1, 2]
    manager.set_configs(model_config.model_configs_from_text(
        f"model_config_list {{ config {{ name: 'echo' base_path: '{model_root}/echo' }} "
        f"config {{ name: 'toy' base_path: '{model_root}/toy' "
        f"model_version_policy {{ specific {{ versions: 1 }} }} }} }}"))
    assert manager.model_names() == ["echo", "toy"]
    assert manager.loaded_versions("toy") == [1] and manager.loaded_versions("echo") == [1]
    with pytest.raises(codec.NotFound):
        manager.get_servable("toy", 2)


def test_batching_merges_requests(model_root):
    # a long timeout and max_batch_size 8: eight concurrent one-row requests become one model call of 8 rows
    handle = server.start_server_thread([ModelSpecConfig("toy", str(model_root / "toy"))], enable_batching=True,
                                        max_batch_size=8, batch_timeout_micros=5_000_000,
                                        file_system_poll_wait_seconds=0)
    try:
        assert handle.batcher.num_batch_threads == (os.cpu_count() or 1)   # TF Serving's default: one per CPU
        toy = handle.manager.get_servable("toy").obj
        calls0, rows0 = int(toy.calls.numpy()), int(toy.rows.numpy())
        texts = [f"text number {'y' * i}" for i in range(8)]
        answers = asyncio.run(_concurrent_predicts(handle.url, texts))
        _check_answers(texts, answers)
        assert int(toy.calls.numpy()) - calls0 == 1          # one underlying model call ...
        assert int(toy.rows.numpy()) - rows0 == 8            # ... that saw all eight rows
        assert list(handle.batcher.stats.batch_sizes) == [8]

        # 32 concurrent clients, split back correctly; batches never exceed max_batch_size
        texts = [f"{i}:" + "z" * (i % 11) for i in range(32)]
        answers = asyncio.run(_concurrent_predicts(handle.url, texts))
        _check_answers(texts, answers)
        sizes = list(handle.batcher.stats.batch_sizes)[1:]
        assert sum(sizes) == 32 and max(sizes) <= 8 and len(sizes) == 4
        assert int(toy.calls.numpy()) - calls0 == 5

        # variable-length int inputs of different lengths are not merged into one call, and both are right
        async def two_lengths():
            import aiohttp
            async with aiohttp.ClientSession() as s:
                async def one(n):
                    inst = [{"input_ids": [1] * n, "input_mask": [1] * n, "segment_ids": [0] * n}]
                    async with s.post(f"{handle.url}/v1/models/toy:predict",
                                      json={"signature_name": "serve_ids", "instances": inst}) as r:
                        return r.status, await r.json()
                return await asyncio.gather(one(3), one(5), one(3))
        handle.batcher.timeout_s = 0.5
        answers = asyncio.run(two_lengths())
        for n, (status, body) in zip((3, 5, 3), answers):
            assert status == 200, body
            np.testing.assert_allclose(body["predictions"][0]["probabilities"], expected_probs("x" * n, 2),
                                       rtol=1e-5)
        assert sorted(list(handle.batcher.stats.batch_sizes)[-2:]) == [1, 2]

        # a bad request merged with good ones fails alone
        async def mixed():
            import aiohttp
            async with aiohttp.ClientSession() as s:
                async def one(ex):
                    async with s.post(f"{handle.url}/v1/models/toy:classify", json={"examples": [ex]}) as r:
                        return r.status, await r.json()
                return await asyncio.gather(one({"text_a": "ok"}), one({"wrong": 1}), one({"text_a": "fine"}))
        answers = asyncio.run(mixed())
        assert [a[0] for a in answers] == [200, 400, 200]
        assert list(handle.batcher.stats.batch_sizes)[-1] == 3
    finally:
        handle.stop()


# ---------------------------------------------------------------- new versions


def test_new_version_picked_up(model_root, tmp_path):
    base = tmp_path / "toy"
    shutil.copytree(model_root / "toy" / "1", base / "1")
    handle = server.start_server_thread([ModelSpecConfig("toy", str(base))], file_system_poll_wait_seconds=0.2)
    try:
        _, body = http("POST", f"{handle.url}/v1/models/toy:predict", {"instances": ["hi"]})
        assert body["predictions"][0]["version"] == 1
        shutil.copytree(model_root / "spare" / "3", tmp_path / "3.partial")
        os.rename(tmp_path / "3.partial", base / "3")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            _, st = http("GET", f"{handle.url}/v1/models/toy")
            if [(s["version"], s["state"]) for s in st["model_version_status"]] == [("3", "AVAILABLE"),
                                                                                    ("1", "AVAILABLE")]:
                break
            time.sleep(0.2)
        assert [s["state"] for s in st["model_version_status"]] == ["AVAILABLE", "AVAILABLE"], st
        _, body = http("POST", f"{handle.url}/v1/models/toy:predict", {"instances": ["hi"]})
        assert body["predictions"][0]["version"] == 3                       # newest is the default
        _, body = http("POST", f"{handle.url}/v1/models/toy/versions/1:predict", {"instances": ["hi"]})
        assert body["predictions"][0]["version"] == 1                       # old one still addressable
        shutil.rmtree(base / "3")                                           # removed folder -> unloaded
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and http("GET", f"{handle.url}/v1/models/toy/versions/3")[0] != 404:
            time.sleep(0.2)
        assert http("POST", f"{handle.url}/v1/models/toy/versions/3:predict", {"instances": ["hi"]})[0] == 404
        assert http("POST", f"{handle.url}/v1/models/toy:predict", {"instances": ["hi"]})[1][
            "predictions"][0]["version"] == 1
    finally:
        handle.stop()


def test_broken_version_reported(model_root, tmp_path):
    base = tmp_path / "toy"
    shutil.copytree(model_root / "toy" / "1", base / "1")
    os.makedirs(base / "2")
    (base / "2" / "saved_model.pb").write_bytes(b"not a saved model")
    handle = server.start_server_thread([ModelSpecConfig("toy", str(base))], file_system_poll_wait_seconds=0)
    try:
        status, body = http("GET", f"{handle.url}/v1/models/toy")
        assert status == 200
        states = {s["version"]: s for s in body["model_version_status"]}
        assert states["1"]["state"] == "AVAILABLE"
        assert states["2"]["state"] == "END" and states["2"]["status"]["error_code"] != "OK"
        assert states["2"]["status"]["error_message"]
        _, body = http("POST", f"{handle.url}/v1/models/toy:predict", {"instances": ["hi"]})
        assert body["predictions"][0]["version"] == 1
    finally:
        handle.stop()


# ---------------------------------------------------------------- serve.py


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_py_subprocess(model_root):
    port = _free_port()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "serve.py"), "--model_name=bert",
                             f"--model_base_path={model_root / 'toy'}", f"--rest_api_port={port}",
                             "--enable_batching", "--batch_timeout_micros=0"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        line = ""
        while time.monotonic() < deadline and proc.poll() is None:
            line = proc.stdout.readline()
            if line.startswith("serving "):
                break
        assert line.startswith("serving bert on http://127.0.0.1:"), line
        status, body = http("GET", f"http://127.0.0.1:{port}/v1/models/bert")
        assert status == 200 and body["model_version_status"][0]["version"] == "2"
        status, body = http("POST", f"http://127.0.0.1:{port}/v1/models/bert:predict", {"instances": ["hi"]})
        assert status == 200 and body["predictions"][0]["label"] == "short"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode in (0, -15)


def test_serve_py_user_errors(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "serve.py"), f"--model_base_path={tmp_path / 'nope'}"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].startswith("error: --model_base_path")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "serve.py")], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 1 and "error: --model_base_path" in r.stderr


# ---------------------------------------------------------------- codec details


def test_codec_roundtrips():
    assert codec.array_to_json(np.array([0.1, 1.0, np.nan], np.float32), "x")[:2] == [0.1, 1.0]
    assert codec.dumps({"v": codec.array_to_json(np.array([np.inf], np.float32), "x")}) == '{"v":[Infinity]}'
    assert codec.array_to_json(np.array([b"\xff\x00"], dtype=object), "s") == [{"b64": "/wA="}]
    with pytest.raises(codec.InvalidArgument, match="out of range"):
        codec.json_to_array([2 ** 31], np.dtype(np.int32), "i")
    with pytest.raises(codec.InvalidArgument, match="expected type"):
        codec.json_to_array([True], np.dtype(np.int32), "i")
    ex = codec.decode_examples({"examples": [{"a": [1, 2], "b": 1.5, "c": "s", "d": {"b64": "AAE="}}]})
    from tensorflow.core.example import example_pb2
    parsed = example_pb2.Example.FromString(ex[0]).features.feature
    assert list(parsed["a"].int64_list.value) == [1, 2] and list(parsed["b"].float_list.value) == [1.5]
    assert list(parsed["c"].bytes_list.value) == [b"s"] and list(parsed["d"].bytes_list.value) == [b"\x00\x01"]
    with pytest.raises(codec.InvalidArgument, match="expecting type"):
        codec.decode_examples({"examples": [{"a": [1, "x"]}]})
