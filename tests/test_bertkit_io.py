"""bertkit_io / bertkit_errors helpers: output path checks, stale temporary files, disk-full errors, flag errors."""
import errno
import os
import subprocess
import sys

import pytest

import bertkit_errors
import bertkit_io

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_check_output_file_refuses_a_directory(tmp_path):
    with pytest.raises(bertkit_errors.UserError, match=r"--output_file=.*: is a directory"):
        bertkit_io.check_output_file(str(tmp_path), "output_file")


def test_check_output_file_parent_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(bertkit_errors.UserError, match=r"--out=.*f/vocab.txt: .*is a file, not a directory"):
        bertkit_io.check_output_file(str(tmp_path / "f" / "vocab.txt"), "out")


def test_check_output_file_creates_missing_parent(tmp_path):
    path = tmp_path / "a" / "b" / "vocab.txt"
    assert bertkit_io.check_output_file(str(path)) == str(path)
    assert path.parent.is_dir() and not path.exists()


def test_check_output_dir_refuses_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(bertkit_errors.UserError, match=r"--output_dir=.*: is a file, a directory is expected"):
        bertkit_io.check_output_dir(str(tmp_path / "f"))


def test_stale_temps_of_dead_runs_are_removed(tmp_path):
    dead = _dead_pid()
    target = tmp_path / "out.txt"
    stale = tmp_path / f"out.txt.tmp-{dead}"
    alive = tmp_path / f"out.txt.tmp-{os.getppid()}"   # a live process: maybe still writing
    other = tmp_path / f"other.txt.tmp-{dead}"          # another file's temporary: not ours to remove
    for p in (stale, alive, other):
        p.write_text("partial")
    with bertkit_io.atomic_write(str(target)) as f:
        f.write("done")
    assert target.read_text() == "done"
    assert not stale.exists()
    assert alive.exists() and other.exists()


def test_stale_export_staging_dirs_are_removed(tmp_path):
    dead = _dead_pid()
    stale = tmp_path / f".tmp-export-{dead}-abc"
    live = tmp_path / f".tmp-export-{os.getppid()}-abc"
    unknown = tmp_path / ".tmp-export-abc"   # no pid in the name: left alone
    for d in (stale, live, unknown):
        (d / "v").mkdir(parents=True)
    removed = bertkit_io.remove_stale_temps(str(tmp_path), "export")
    assert removed == [str(stale)]
    assert live.exists() and unknown.exists()


def test_atomic_write_disk_full_is_one_line_and_leaves_nothing(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(bertkit_errors.UserError, match=r"out.txt: no space left on device"):
        with bertkit_io.atomic_write(str(target)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert os.listdir(tmp_path) == []


def test_is_no_space_tensorflow_message():
    class ResourceExhaustedError(Exception):
        message = "/x/ckpt-3_temp/part-00000-of-00001.data-00000-of-00001.tempstate1; No space left on device"
    assert bertkit_io.is_no_space(ResourceExhaustedError())
    assert not bertkit_io.is_no_space(OSError(errno.EACCES, "Permission denied"))
    assert not bertkit_io.is_no_space(MemoryError("OOM when allocating tensor"))


@pytest.mark.parametrize("flag, expected", [
    ("--no_such_flag=1", "error: Unknown command line flag 'no_such_flag'"),
    ("--vocab_size=abc", "error: flag --vocab_size=abc: invalid literal for int()"),
])
def test_absl_flag_errors_are_one_error_line(flag, expected):
    proc = subprocess.run([sys.executable, "build_vocab.py", flag], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), proc.stderr
    assert "FATAL" not in proc.stderr


def test_new_dir_removed_on_error(tmp_path):
    new = tmp_path / "new"
    with pytest.raises(ValueError):
        with bertkit_io.new_dir_removed_on_error(str(new)):
            new.mkdir()
            (new / "vocab.txt").write_text("[PAD]\n")
            raise ValueError("a later check")
    assert not new.exists()
    # finished work (records) stays for the next run; so does a directory that existed before
    with pytest.raises(ValueError):
        with bertkit_io.new_dir_removed_on_error(str(new)):
            new.mkdir()
            (new / "vocab.txt").write_text("[PAD]\n")
            (new / "train.tf_record").write_bytes(b"")
            raise ValueError("a later check")
    assert (new / "train.tf_record").exists()
    old = tmp_path / "old"
    old.mkdir()
    with pytest.raises(ValueError):
        with bertkit_io.new_dir_removed_on_error(str(old)):
            (old / "vocab.txt").write_text("[PAD]\n")
            raise ValueError("a later check")
    assert (old / "vocab.txt").exists()
    with bertkit_io.new_dir_removed_on_error(str(tmp_path / "ok")):
        (tmp_path / "ok").mkdir()
    assert (tmp_path / "ok").is_dir()
