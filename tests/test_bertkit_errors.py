"""run_main: a restore that failed on a shape mismatch ends on its one error line, without the ~110 deferred-restore
warnings tf.train.Checkpoint logs when the half-done restore is collected."""
import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent("""
    import sys
    import keras
    import tensorflow as tf
    import bertkit_errors

    def model(n):
        m = keras.Sequential([keras.layers.Dense(n), keras.layers.Dense(n)])
        m.build((None, 2))
        return m

    prefix = tf.train.Checkpoint(encoder=model(4)).save(sys.argv[1])

    def main(argv):
        try:
            tf.train.Checkpoint(encoder=model(3)).restore(prefix)
        except ValueError as e:
            raise bertkit_errors.UserError(f"{prefix}: shape mismatch") from None

    bertkit_errors.run_main(main)
""")


def test_failed_restore_warnings_do_not_bury_the_error(tmp_path):
    script = tmp_path / "restore.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "ck")], capture_output=True, text=True,
                          timeout=300, env=env, cwd=ROOT)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].endswith(": shape mismatch"), proc.stderr[-2000:]
    assert "Value in checkpoint could not be found" not in proc.stderr
    assert "unrestored values" not in proc.stderr
