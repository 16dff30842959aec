"""The bad-input cases of serve.py: its command line, then HTTP requests to one running server."""
import os
import socket

from bench.bad_inputs.common import last_line, write
from bench.bad_inputs.http_cases import (GOOD, http_case, raw_http_case, serve_ids_body, server_still_good,
                                         version_in_two_steps)
from bench.bad_inputs.runner import Case, Result, judge_error, run_process
from bench.bad_inputs.setups import SV


def add(C, E, W):
    """Append this group's cases to C (E: an error case, W: a warning case)."""
    # ---------------------------------------------------------------------------------------- serve.py (CLI)
    E("sv-no-model", SV, ["--rest_api_port=0"], ["model_base_path", "model_config_file"], timeout=60)
    E("sv-missing-base", SV, ["--model_base_path={d}/nobase", "--rest_api_port=0"], ["nobase"], timeout=60)
    E("sv-base-is-file", SV, ["--model_base_path={corpus}", "--rest_api_port=0"], ["corpus.txt"], timeout=60)
    E("sv-bad-port", SV, ["--model_base_path={export}", "--rest_api_port=70000"], ["rest_api_port"], timeout=60)
    E("sv-port-not-int", SV, ["--model_base_path={export}", "--rest_api_port=http"], ["rest_api_port"], timeout=60)
    E("sv-bad-name", SV, ["--model_base_path={export}", "--model_name=a/b", "--rest_api_port=0"], ["model_name"],
      timeout=60)
    E("sv-both-configs", SV, ["--model_base_path={export}", "--model_config_file={d}/m.config",
                              "--rest_api_port=0"], ["model_config_file", "model_base_path"],
      setup=lambda c, d: write(os.path.join(d, "m.config"), "model_config_list {}"), timeout=60)
    E("sv-config-missing", SV, ["--model_config_file={d}/none.config", "--rest_api_port=0"], ["none.config"],
      timeout=60)
    E("sv-config-garbage", SV, ["--model_config_file={d}/m.config", "--rest_api_port=0"], ["m.config"],
      setup=lambda c, d: write(os.path.join(d, "m.config"), "model_config_list { config { name: 'x' base_path: "),
      timeout=60)
    E("sv-config-no-base-path", SV, ["--model_config_file={d}/m.config", "--rest_api_port=0"],
      ["m.config", "base_path"], setup=lambda c, d: write(
          os.path.join(d, "m.config"), "model_config_list { config { name: 'x' model_platform: 'tensorflow' } }"),
      timeout=60)
    E("sv-zero-max-batch", SV, ["--model_base_path={export}", "--max_batch_size=0", "--rest_api_port=0"],
      ["max_batch_size"], timeout=60)
    E("sv-negative-timeout", SV, ["--model_base_path={export}", "--batch_timeout_micros=-1", "--rest_api_port=0"],
      ["batch_timeout_micros"], timeout=60)
    E("sv-unknown-flag", SV, ["--model_base_path={export}", "--rest_port=8600"], ["rest_port"], timeout=60)

    def sv_port_taken(ctx, case, d):
        srv = ctx.server
        argv = ["--model_name=x", f"--model_base_path={srv.base}", f"--rest_api_port={srv.port}"]
        rc, so, se = run_process(ctx, case, d, argv, timeout=120)
        v, why = judge_error(rc, so, se, ("rest_api_port", str(srv.port), "listen"), [], [], [], {})
        return Result(rc, last_line(se) or last_line(so), v, why)
    C.append(Case("sv-port-in-use", SV, expect="custom", run=sv_port_taken, names=("rest_api_port",)))

    # ---------------------------------------------------------------------------------------- serve.py (HTTP)
    P = "/v1/models/clf:predict"
    C.append(http_case("http-good-request", "POST", P, GOOD, good=True, note="sanity: the server answers"))
    C.append(http_case("http-bad-json", "POST", P, '{"instances": ["a", }', ["json", "parse"]))
    C.append(http_case("http-not-json", "POST", P, b"\x00\xff\xfe binary", ["json", "parse", "utf"]))
    C.append(http_case("http-empty-body", "POST", P, b"", ["json", "body", "empty"]))
    C.append(http_case("http-deep-nesting", "POST", P, '{"instances": ' + "[" * 100000 + "]" * 100000 + "}",
                       ["nest", "deep", "json", "instances"]))
    C.append(http_case("http-deep-object", "POST", P, '{"a":' * 50000 + "1" + "}" * 50000,
                       ["nest", "deep", "json", "instances"]))
    C.append(http_case("http-json-list-top", "POST", P, '["just", "a", "list"]', ["object", "instances", "json"]))
    C.append(http_case("http-no-instances", "POST", P, {"foo": ["bar"]}, ["instances", "inputs"]))
    C.append(http_case("http-both-instances-inputs", "POST", P, {"instances": ["a"], "inputs": ["b"]},
                       ["instances", "inputs"]))
    C.append(http_case("http-empty-instances", "POST", P, {"instances": []}, ["instances", "empty"]))
    C.append(http_case("http-wrong-signature", "POST", P, {"signature_name": "serve_idz", "instances": ["a"]},
                       ["serve_idz"]))
    C.append(http_case("http-signature-not-string", "POST", P, {"signature_name": 5, "instances": ["a"]},
                       ["signature_name"]))
    C.append(http_case("http-number-for-text", "POST", P, {"instances": [12345]}, ["string", "type", "text"]))
    C.append(http_case("http-null-instance", "POST", P, {"instances": [None]}, ["null", "string", "type"]))
    C.append(http_case("http-nested-text", "POST", P, {"instances": [["a", ["b"]]]}, ["shape", "rank", "nest",
                                                                                        "string", "list"]))
    C.append(http_case("http-ids-unequal-lengths", "POST", P, serve_ids_body([2, 5, 3], [1, 1], [0, 0, 0]),
                       ["input_mask", "length", "shape"]))
    C.append(http_case("http-ids-ragged-rows", "POST", P,
                       {"signature_name": "serve_ids", "instances": [
                           {"input_ids": [2, 5, 3], "input_mask": [1, 1, 1], "segment_ids": [0, 0, 0]},
                           {"input_ids": [2, 3], "input_mask": [1, 1], "segment_ids": [0, 0]}]},
                       ["length", "shape", "ragged", "same", "input_ids"]))
    C.append(http_case("http-ids-strings", "POST", P, serve_ids_body(["a", "b"], [1, 1], [0, 0]),
                       ["input_ids", "int", "type"]))
    C.append(http_case("http-ids-out-of-vocab", "POST", P, serve_ids_body([2, 99999999, 3], [1, 1, 1], [0, 0, 0]),
                       ["input_ids", "vocab", "range"]))
    C.append(http_case("http-ids-negative", "POST", P, serve_ids_body([2, -7, 3], [1, 1, 1], [0, 0, 0]),
                       ["input_ids", "range", "negative"]))
    C.append(http_case("http-ids-segment-2", "POST", P, serve_ids_body([2, 5, 3], [1, 1, 1], [0, 2, 0]),
                       ["segment_ids", "range", "type_vocab"]))
    C.append(http_case("http-ids-too-long", "POST", P, serve_ids_body([2] * 600, [1] * 600, [0] * 600),
                       ["length", "max", "position", "input_ids"]))
    C.append(http_case("http-ids-missing-input", "POST", P,
                       {"signature_name": "serve_ids", "instances": [{"input_ids": [2, 5, 3]}]},
                       ["input_mask", "segment_ids", "missing"]))
    C.append(http_case("http-ids-extra-input", "POST", P,
                       {"signature_name": "serve_ids", "instances": [
                           {"input_ids": [2, 3], "input_mask": [1, 1], "segment_ids": [0, 0], "foo": [1, 1]}]},
                       ["foo"]))
    C.append(http_case("http-int-overflow", "POST", P, serve_ids_body([2, 2 ** 70, 3], [1, 1, 1], [0, 0, 0]),
                       ["input_ids", "range", "int"]))
    C.append(http_case("http-unknown-model", "POST", "/v1/models/nosuch:predict", GOOD, ["nosuch"]))
    C.append(http_case("http-unknown-version", "POST", "/v1/models/clf/versions/99:predict", GOOD, ["99"]))
    C.append(http_case("http-version-not-int", "POST", "/v1/models/clf/versions/latest:predict", GOOD,
                       ["version", "latest"]))
    C.append(http_case("http-unknown-label", "POST", "/v1/models/clf/labels/canary:predict", GOOD, ["canary"]))
    C.append(http_case("http-unknown-verb", "POST", "/v1/models/clf:explain", GOOD, ["explain"]))
    C.append(http_case("http-get-predict", "GET", P, None, ["predict", "POST", "GET", "method"]))
    C.append(http_case("http-status-unknown-model", "GET", "/v1/models/nosuch", None, ["nosuch"]))
    C.append(http_case("http-metadata-unknown-version", "GET", "/v1/models/clf/versions/7/metadata", None, ["7"]))
    C.append(http_case("http-classify-text", "POST", "/v1/models/clf:classify", {"examples": ["not an example"]},
                       ["example", "feature"]))
    C.append(http_case("http-classify-no-examples", "POST", "/v1/models/clf:classify", {"instances": ["a"]},
                       ["examples"]))
    C.append(http_case("http-regress-classifier", "POST", "/v1/models/clf:regress",
                       {"examples": [{"text": "a match"}]}, ["regress", "signature", "feature"]))
    C.append(http_case("http-output-filter-unknown", "POST", P, {"instances": ["a"], "output_filter": ["nope"]},
                       ["nope"]))
    C.append(http_case("http-huge-body", "POST", P, '{"instances": ["' + "x" * (2 << 20) + '"]}',
                       ["max_request_bytes", "large"]))
    C.append(http_case("http-instances-not-list", "POST", P, {"instances": "a text"}, ["instances", "list"]))
    C.append(http_case("http-wrong-content-type", "POST", P, "instances=a", ["json", "parse"],
                       headers={"Content-Type": "application/x-www-form-urlencoded"}))
    C.append(http_case("http-b64-bad", "POST", P, {"instances": [{"b64": "!!!notbase64"}]}, ["b64", "base64"]))

    def send_partial(s):
        s.sendall(b"POST /v1/models/clf:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 1000\r\n\r\n{\"instances\": [\"a")
        s.shutdown(socket.SHUT_WR)
    C.append(raw_http_case("http-client-disconnects-mid-body", send_partial, ["body", "incomplete", "length"]))

    def send_lying_length(s):
        s.sendall(b"POST /v1/models/clf:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 999999999999\r\n\r\n{}")
        s.shutdown(socket.SHUT_WR)
    C.append(raw_http_case("http-huge-content-length", send_lying_length, ["max_request_bytes", "large"]))

    def send_bad_request_line(s):
        s.sendall(b"GARBAGE\r\n\r\n")
        s.shutdown(socket.SHUT_WR)
    C.append(raw_http_case("http-garbage-request-line", send_bad_request_line, ["bad", "request", "method"]))
    C.append(Case("http-version-in-two-steps", SV, expect="http", run=version_in_two_steps, timeout=120))
    C.append(Case("http-still-serving-after-all", SV, expect="http", run=server_still_good, timeout=60))
