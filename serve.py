"""Serve bertkit SavedModels over TF Serving's REST API, for machines without TF Serving.

    python serve.py --model_name=bert --model_base_path=export/          # export/<version>/saved_model.pb
    python serve.py --model_config_file=models.config --enable_batching
    curl -d '{"instances": ["a short text"]}' http://127.0.0.1:8501/v1/models/bert:predict

Flags keep TF Serving's names. Binds to 127.0.0.1 unless --rest_api_host says otherwise. See
serving/README_SERVING.md.
"""
import asyncio
import logging
import os
import signal

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


def _configs():
    from serving import model_config, server
    if FLAGS.model_config_file and FLAGS.model_base_path:
        raise bertkit_errors.UserError("--model_config_file and --model_base_path: give one of them, not both")
    if FLAGS.model_config_file:
        configs = model_config.read_model_config_file(FLAGS.model_config_file)
    elif FLAGS.model_base_path:
        name = FLAGS.model_name
        if not name or "/" in name or ":" in name:
            raise bertkit_errors.UserError(f"--model_name={name!r}: must be non-empty without '/' or ':'")
        configs = [server.single_model_config(name, FLAGS.model_base_path)]
    else:
        raise bertkit_errors.UserError("--model_base_path (with --model_name) or --model_config_file is required")
    for c in configs:
        flag = "model_base_path" if FLAGS.model_base_path else "model_config_file"
        if not os.path.isdir(c.base_path):
            raise bertkit_errors.UserError(f"--{flag}: model '{c.name}': base path {c.base_path} is not a directory")
        if not server.list_version_dirs(c.base_path):
            logging.warning("model '%s': no version folders (<base_path>/<integer>/saved_model.pb) in %s yet; "
                            "waiting for one", c.name, c.base_path)
    return configs


def main(argv):
    del argv
    from serving import model_config, server
    if not 0 <= FLAGS.rest_api_port <= 65535:
        raise bertkit_errors.UserError(f"--rest_api_port={FLAGS.rest_api_port}: not a port number")
    for name in ("max_batch_size", "max_request_bytes"):
        if getattr(FLAGS, name) < 1:
            raise bertkit_errors.UserError(f"--{name}={getattr(FLAGS, name)}: must be >= 1")
    if FLAGS.batch_timeout_micros < 0:
        raise bertkit_errors.UserError("--batch_timeout_micros: must be >= 0")
    if FLAGS.port is not None:
        logging.warning("--port=%d: gRPC is not served by serve.py; only the REST API on --rest_api_port",
                        FLAGS.port)
    logging.getLogger().setLevel(logging.INFO)
    configs = _configs()

    tf = server._import_tf()
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
    manager = server.ModelManager(configs, options.file_system_poll_wait_seconds)
    manager.poll_once()

    config_reader = None
    if FLAGS.model_config_file and FLAGS.model_config_file_poll_wait_seconds > 0:
        path, last = FLAGS.model_config_file, [os.path.getmtime(FLAGS.model_config_file)]

        def config_reader():
            try:
                mtime = os.path.getmtime(path)
                if mtime == last[0]:
                    return None
                last[0] = mtime
                return model_config.read_model_config_file(path)
            except (OSError, bertkit_errors.UserError) as e:
                logging.error("not reloading %s: %s", path, e)
                return None
    manager.start_polling(config_reader, FLAGS.model_config_file_poll_wait_seconds)

    async def run():
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

        def ready(port):
            print(f"serving {', '.join(manager.model_names())} on http://{options.host}:{port}/v1/models/"
                  f"<name> (batching {'on' if options.enable_batching else 'off'})", flush=True)
        try:
            await server.serve(manager, options, ready, stop)
        except OSError as e:
            raise bertkit_errors.UserError(f"--rest_api_host={options.host} --rest_api_port={options.port}: "
                                           f"cannot listen ({e.strerror})") from None

    try:
        asyncio.run(run())
    finally:
        manager.stop()


if __name__ == "__main__":
    bertkit_errors.run_main(main)
