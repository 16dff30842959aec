"""Export staging folders: a full disk while exporting is one UserError naming --export_dir (the staging folder
removed); staging folders of killed exports (pid no longer alive) are removed by the next export."""
import errno
import os
import subprocess
import sys

import pytest

import bertkit_errors
from serving import export_dirs


def test_full_disk_during_export_is_one_line(tmp_path):
    with pytest.raises(bertkit_errors.UserError, match=r"--export_dir=.*: no space left on device"):
        with export_dirs.staging_dir(str(tmp_path)) as tmp:
            assert os.path.basename(tmp).startswith(f".tmp-export-{os.getpid()}-")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert os.listdir(tmp_path) == []


def test_staging_folders_of_killed_exports_are_removed(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    (tmp_path / f".tmp-export-{proc.pid}-x1" / "v").mkdir(parents=True)
    (tmp_path / "1").mkdir()
    with export_dirs.staging_dir(str(tmp_path)):
        names = sorted(os.listdir(tmp_path))
    assert len(names) == 2 and names[1] == "1" and names[0].startswith(f".tmp-export-{os.getpid()}-")
