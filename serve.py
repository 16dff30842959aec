"""Serve bertkit SavedModels over TF Serving's REST API, for machines without TF Serving.

    python serve.py --model_name=bert --model_base_path=export/          # export/<version>/saved_model.pb
    python serve.py --model_config_file=models.config --enable_batching
    curl -d '{"instances": ["a short text"]}' http://127.0.0.1:8501/v1/models/bert:predict

Flags keep TF Serving's names. Binds to 127.0.0.1 unless --rest_api_host says otherwise. See
serving/README_SERVING.md.
"""
import logging

from absl import flags

import bertkit_errors

FLAGS = flags.FLAGS
flags.DEFINE_string("model_name", "default", "Name of the model (with --model_base_path).")
flags.DEFINE_string("model_base_path", None, "Folder holding numbered version folders <version>/saved_model.pb.")
flags.DEFINE_string("model_config_file", None, "TF Serving models.config (model_config_list text proto); "
                    "instead of --model_name/--model_base_path, for several models.")
flags.DEFINE_integer("model_config_file_poll_wait_seconds", 0, "Re-read --model_config_file this often (0: never).")
flags.DEFINE_integer("rest_api_port", 8501, "Port of the REST API.")
flags.DEFINE_string("rest_api_host", "127.0.0.1", "Address to bind; 0.0.0.0 exposes the server to the network.")
flags.DEFINE_integer("rest_api_num_threads", 0, "Threads running model calls (0: max(4, CPU count)).")
flags.DEFINE_integer("port", None, "TF Serving's gRPC port: accepted for command-line compatibility, gRPC is not "
                     "served.")
flags.DEFINE_bool("enable_batching", False, "Merge concurrent requests into batched model calls.")
flags.DEFINE_integer("max_batch_size", 32, "Most rows in one merged model call.")
flags.DEFINE_integer("batch_timeout_micros", 1000, "Longest a request waits for its batch to fill.")
flags.DEFINE_integer("num_batch_threads", 0, "Merged calls in flight at once per model/version/signature "
                     "(0: the CPU count, TF Serving's default).")
flags.DEFINE_float("file_system_poll_wait_seconds", 1, "Seconds between scans for new/removed version folders; "
                   "0 or less: scan only at startup.")
flags.DEFINE_integer("max_request_bytes", 64 << 20, "Largest request body; bigger ones get 413.")
flags.DEFINE_integer("tensorflow_intra_op_parallelism", 0, "TensorFlow intra-op threads (0: TF default).")
flags.DEFINE_integer("tensorflow_inter_op_parallelism", 0, "TensorFlow inter-op threads (0: TF default).")


def _check_flags():
    """Flag errors, before the packages (TensorFlow: seconds) are imported."""
    if not 0 <= FLAGS.rest_api_port <= 65535:
        raise bertkit_errors.UserError(f"--rest_api_port={FLAGS.rest_api_port}: not a port number")
    for name in ("max_batch_size", "max_request_bytes"):
        if getattr(FLAGS, name) < 1:
            raise bertkit_errors.UserError(f"--{name}={getattr(FLAGS, name)}: must be >= 1")
    if FLAGS.batch_timeout_micros < 0:
        raise bertkit_errors.UserError("--batch_timeout_micros: must be >= 0")
    if FLAGS.model_config_file and FLAGS.model_base_path:
        raise bertkit_errors.UserError("--model_config_file and --model_base_path: give one of them, not both")
    if not FLAGS.model_config_file and not FLAGS.model_base_path:
        raise bertkit_errors.UserError("--model_base_path (with --model_name) or --model_config_file is required")
    name = FLAGS.model_name
    if FLAGS.model_base_path and (not name or "/" in name or ":" in name):
        raise bertkit_errors.UserError(f"--model_name={name!r}: must be non-empty without '/' or ':'")
    if FLAGS.port is not None:
        logging.warning("--port=%d: gRPC is not served by serve.py; only the REST API on --rest_api_port",
                        FLAGS.port)


def main(argv):
    del argv
    _check_flags()
    import tensorflow as tf

    from serving import manager as manager_lib
    from serving import server

    logging.getLogger().setLevel(logging.INFO)
    configs = manager_lib.model_configs(FLAGS.model_config_file, FLAGS.model_base_path, FLAGS.model_name)
    if FLAGS.tensorflow_intra_op_parallelism:
        tf.config.threading.set_intra_op_parallelism_threads(FLAGS.tensorflow_intra_op_parallelism)
    if FLAGS.tensorflow_inter_op_parallelism:
        tf.config.threading.set_inter_op_parallelism_threads(FLAGS.tensorflow_inter_op_parallelism)

    options = server.ServerOptions(
        host=FLAGS.rest_api_host, port=FLAGS.rest_api_port, enable_batching=FLAGS.enable_batching,
        max_batch_size=FLAGS.max_batch_size, batch_timeout_micros=FLAGS.batch_timeout_micros,
        num_batch_threads=FLAGS.num_batch_threads, max_request_bytes=FLAGS.max_request_bytes,
        rest_api_num_threads=FLAGS.rest_api_num_threads,
        file_system_poll_wait_seconds=FLAGS.file_system_poll_wait_seconds)
    manager = manager_lib.ModelManager(configs, options.file_system_poll_wait_seconds)
    manager.poll_once()
    reload_configs = FLAGS.model_config_file and FLAGS.model_config_file_poll_wait_seconds > 0
    manager.start_polling(manager_lib.config_file_reader(FLAGS.model_config_file) if reload_configs else None,
                          FLAGS.model_config_file_poll_wait_seconds)

    def ready(port):
        print(f"serving {', '.join(manager.model_names())} on http://{options.host}:{port}/v1/models/"
              f"<name> (batching {'on' if options.enable_batching else 'off'})", flush=True)
    try:
        server.serve_until_signal(manager, options, ready)
    except OSError as e:
        raise bertkit_errors.UserError(f"--rest_api_host={options.host} --rest_api_port={options.port}: "
                                       f"cannot listen ({e.strerror})") from None
    finally:
        manager.stop()


if __name__ == "__main__":
    bertkit_errors.run_main(main)
