"""Server weak spots: deeply nested JSON is a 400, a client that disconnects mid-body is one log line (no
traceback), and a version whose files appear in two steps is loaded once the rest arrives."""
import logging
import os
import shutil
import socket
import time

from serving import server
from serving.manager import ModelManager
from serving.model_config import ModelSpecConfig
from tests.serving.test_server import http


def test_deeply_nested_json_is_400(model_root):
    handle = server.start_server_thread([ModelSpecConfig("toy", str(model_root / "toy"))],
                                        file_system_poll_wait_seconds=0)
    try:
        body = b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        status, doc = http("POST", f"{handle.url}/v1/models/toy:predict", raw=body)
        assert status == 400 and "nested too deeply" in doc["error"]
        status, _ = http("POST", f"{handle.url}/v1/models/toy:predict", {"instances": ["still serving"]})
        assert status == 200
    finally:
        handle.stop()


def test_client_disconnect_mid_body_is_one_line(model_root, caplog):
    handle = server.start_server_thread([ModelSpecConfig("toy", str(model_root / "toy"))],
                                        file_system_poll_wait_seconds=0)
    try:
        with caplog.at_level(logging.INFO):
            s = socket.create_connection(("127.0.0.1", handle.port))
            s.sendall(b"POST /v1/models/toy:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 1000\r\n\r\n{\"instances\": [")
            time.sleep(0.3)
            s.close()
            deadline = time.time() + 10
            while time.time() < deadline and not any("disconnected" in r.getMessage() for r in caplog.records):
                time.sleep(0.1)
        lines = [r for r in caplog.records if "disconnected" in r.getMessage()]
        assert len(lines) == 1 and "client disconnected before sending the whole body" in lines[0].getMessage()
        assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    finally:
        handle.stop()


def test_version_whose_variables_arrive_later_is_loaded(model_root, tmp_path):
    base = tmp_path / "toy"
    src = model_root / "toy" / "2"
    os.makedirs(base / "2")
    shutil.copy(src / "saved_model.pb", base / "2" / "saved_model.pb")  # the graph first, the variables later
    manager = ModelManager([ModelSpecConfig("toy", str(base))], poll_wait_seconds=0)
    manager.poll_once()
    assert manager.status("toy")["model_version_status"][0]["state"] == "END"
    manager.poll_once()  # nothing changed: no retry
    assert manager.status("toy")["model_version_status"][0]["state"] == "END"
    for name in os.listdir(src):
        if name != "saved_model.pb":
            (shutil.copytree if (src / name).is_dir() else shutil.copy)(src / name, base / "2" / name)
    manager.poll_once()
    assert manager.status("toy")["model_version_status"][0]["state"] == "AVAILABLE"
