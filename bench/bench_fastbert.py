"""FastBERT end to end on BBC News: fine-tune, self-distil the branches, then accuracy/speed at several speeds.

1. Stage 1: a small BERT (default configs/demo_teacher.json: 8 layers, hidden 128, 4 heads, intermediate 512; vocab
   from tests/data_files/bert_uncased_vocab.txt, so vocab_size 30522) is fine-tuned on the BBC News train split
   (data/bbc.py) for --epochs epochs at --max_seq_length, with TrainerModel + the BERT optimizer, from
   --init_checkpoint (a pre-trained encoder, e.g. demo.py's teacher with its config and vocab) or from random
   weights. From random weights a few epochs do not get above chance (the final classifier stays near uniform, so
   no branch is confident and nothing exits early): the accuracy/speed trade-off needs a pre-trained encoder.
2. Stage 2: FastBERT branches (training.fastbert.BranchSet) are trained by self-distillation on the train texts read
   as unlabelled text (`unlabelled_text_dataset(train.tsv, text_column="text")`), backbone + final head frozen.
3. `evaluate_speeds` on the dev split at batch --eval_batch_size (default 32): the full model and each --speeds
   value, examples/s timed over the whole dev set after a warm-up batch; printed as a table with the load average.
   The summaries (scalars, table, plot) go to <work_dir>/logs/eval.

Stage checkpoints are kept in <work_dir>/<shape> and reused (--reuse), so the evaluation can be rerun alone.

    .venv/bin/python bench/bench_fastbert.py [--epochs=3 --distill_epochs=2 --num_layers=8 --hidden_size=128
        --max_docs_per_label=0 --speeds=0,0.1,0.3,0.5,0.8 --threads=0 --reuse]
"""
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from data import bbc, finetuning, processors  # noqa: E402
from modeling import ModelConfig, build_classifier  # noqa: E402
from tokenization import FullTokenizer, load_vocab  # noqa: E402
from training import fastbert, fastbert_speed, optimization  # noqa: E402
from training.checkpointing import restore_encoder_weights  # noqa: E402
from training.trainer import TrainerModel  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("work_dir", "/tmp/bench_fastbert", "data, checkpoints and summaries")
flags.DEFINE_string("bert_config_file", os.path.join(ROOT, "configs", "demo_teacher.json"), "model shape")
flags.DEFINE_string("vocab_file", os.path.join(ROOT, "tests", "data_files", "bert_uncased_vocab.txt"),
                    "WordPiece vocab (vocab_size is raised to its size when the config's is smaller)")
flags.DEFINE_string("init_checkpoint", None, "pre-trained encoder to fine-tune from (bertkit checkpoint / model dir, "
                    "or a format modeling.checkpoints reads); its config and vocab must match --bert_config_file / "
                    "--vocab_file. Without one the model is fine-tuned from random weights")
flags.DEFINE_integer("num_layers", 0, "override num_hidden_layers (0: the config's)")
flags.DEFINE_integer("hidden_size", 0, "override hidden_size (0: the config's; intermediate = 4 x hidden)")
flags.DEFINE_integer("max_seq_length", 128, "tokens per example")
flags.DEFINE_integer("max_docs_per_label", 0, "keep only N articles per label (0: all 2,225), for quick runs")
flags.DEFINE_integer("train_batch_size", 32, "fine-tuning and distillation batch size")
flags.DEFINE_integer("eval_batch_size", 32, "evaluation (timed) batch size")
flags.DEFINE_float("epochs", 4.0, "stage 1 epochs")
flags.DEFINE_float("learning_rate", 5e-4, "stage 1 peak learning rate (no pre-training: a high one)")
flags.DEFINE_float("dropout", 0.0, "hidden and attention dropout in stage 1 (-1: the config's)")
flags.DEFINE_float("distill_epochs", 3.0, "stage 2 epochs")
flags.DEFINE_float("distill_learning_rate", 2e-3, "stage 2 peak learning rate")
flags.DEFINE_integer("branch_hidden_size", 128, "FastBERT branch width")
flags.DEFINE_list("speeds", ["0", "0.1", "0.3", "0.5", "0.8"], "speeds to evaluate")
flags.DEFINE_integer("num_warmup_batches", 1, "untimed batches before each timed pass")
flags.DEFINE_integer("repeats", 3, "timed passes per model/speed; the fastest is reported")
flags.DEFINE_integer("threads", 0, "TF intra-op threads (0: TF default)")
flags.DEFINE_integer("seed", 12345, "random seed")
flags.DEFINE_bool("reuse", True, "reuse the stage checkpoints found in work_dir")


def _load():
    return f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)"


def _config():
    config = ModelConfig.from_json_file(FLAGS.bert_config_file)
    vocab_size = len(load_vocab(FLAGS.vocab_file))
    changes = {"vocab_size": vocab_size} if vocab_size > config.vocab_size else {}
    if FLAGS.num_layers:
        changes["num_hidden_layers"] = FLAGS.num_layers
    if FLAGS.hidden_size:
        changes.update(hidden_size=FLAGS.hidden_size, intermediate_size=4 * FLAGS.hidden_size)
    if FLAGS.dropout >= 0:
        changes.update(hidden_dropout_prob=FLAGS.dropout, attention_probs_dropout_prob=FLAGS.dropout)
    return config.replace(**changes)


def _features(examples, labels, tokenizer):
    f = finetuning.convert_examples_to_features(examples, labels, FLAGS.max_seq_length, tokenizer)
    return {k: v.astype(np.int32) for k, v in f.items() if k != "example_index"}


def _train_dataset(features, batch_size):
    n = len(features["input_ids"])
    return (tf.data.Dataset.from_tensor_slices(features).repeat().shuffle(n, seed=FLAGS.seed)
            .batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE))


def _classification_loss_fn(features, logits):
    labels = tf.reshape(tf.cast(features["label_ids"], tf.int32), [-1])
    per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=tf.cast(logits, tf.float32))
    correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32)
    return tf.reduce_mean(per_example), {"accuracy": (correct, None)}


def _fit(trainer, dataset, steps, steps_per_epoch, lr):
    trainer.compile(optimizer=optimization.create_optimizer(lr, steps, max(1, steps // 10), clipnorm=None))
    trainer.build_for(dataset.element_spec)
    start = time.perf_counter()
    epochs = max(1, round(steps / steps_per_epoch))

    def show(epoch, logs):
        print(f"  epoch {epoch + 1}/{epochs}, {time.perf_counter() - start:.0f}s: " + " ".join(
            f"{k}={float(v):.4f}" for k, v in sorted(logs.items()) if not k.startswith(("kl_", "agreement_"))),
            flush=True)

    hist = trainer.fit(dataset, epochs=epochs, steps_per_epoch=steps // epochs, verbose=0,
                       callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=show)])
    return {k: float(v[-1]) for k, v in hist.history.items()}


def main(argv):
    del argv
    if FLAGS.threads:
        tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
    keras.utils.set_random_seed(FLAGS.seed)
    print(f"start: {_load()}")
    config = _config()
    data_dir = os.path.join(FLAGS.work_dir, f"bbc_{FLAGS.max_docs_per_label or 'all'}")
    if not os.path.exists(os.path.join(data_dir, "dev.tsv")):
        bbc.build_bbc(data_dir, max_docs_per_label=FLAGS.max_docs_per_label or None)
    processor = processors.get_processor("bbc")
    labels = processor.get_labels()
    tokenizer = FullTokenizer(FLAGS.vocab_file, do_lower_case=True)
    train = _features(processor.get_train_examples(data_dir), labels, tokenizer)
    dev = _features(processor.get_dev_examples(data_dir), labels, tokenizer)
    n_train = len(train["input_ids"])
    print(f"BBC: {n_train} train, {len(dev['input_ids'])} dev, max_seq_length {FLAGS.max_seq_length}; model "
          f"{config.num_hidden_layers} layers, hidden {config.hidden_size}, intermediate {config.intermediate_size}, "
          f"vocab {config.vocab_size}")

    init = os.path.basename(os.path.normpath(FLAGS.init_checkpoint)) if FLAGS.init_checkpoint else "scratch"
    shape = (f"{init}_L{config.num_hidden_layers}_H{config.hidden_size}_T{FLAGS.max_seq_length}_"
             f"d{FLAGS.max_docs_per_label}_e{FLAGS.epochs:g}_lr{FLAGS.learning_rate:g}_do{FLAGS.dropout:g}_de{FLAGS.distill_epochs:g}_"
             f"dlr{FLAGS.distill_learning_rate:g}_b{FLAGS.branch_hidden_size}")
    ckpt_dir = os.path.join(FLAGS.work_dir, shape)
    os.makedirs(ckpt_dir, exist_ok=True)
    classifier = build_classifier(config, len(labels))
    branches = fastbert.BranchSet(config.num_hidden_layers, len(labels), FLAGS.branch_hidden_size)
    stage1 = tf.train.Checkpoint(encoder=classifier.encoder, classifier_head=classifier.head)
    stage2 = tf.train.Checkpoint(branches=branches)
    steps_per_epoch = n_train // FLAGS.train_batch_size

    # Stage 1: fine-tune backbone + final classifier.
    if FLAGS.reuse and tf.train.latest_checkpoint(os.path.join(ckpt_dir, "stage1")):
        stage1.restore(tf.train.latest_checkpoint(os.path.join(ckpt_dir, "stage1"))).assert_existing_objects_matched()
        print(f"stage 1: restored from {ckpt_dir}")
    else:
        print(f"stage 1: fine-tune {FLAGS.epochs:g} epochs")
        if FLAGS.init_checkpoint:
            print(f"  encoder initialised from {restore_encoder_weights(classifier.encoder, FLAGS.init_checkpoint)}")
        trainer = TrainerModel(classifier, _classification_loss_fn, ["accuracy"], clip_norm=1.0)
        _fit(trainer, _train_dataset(train, FLAGS.train_batch_size), int(FLAGS.epochs * steps_per_epoch),
             steps_per_epoch, FLAGS.learning_rate)
        tf.train.CheckpointManager(stage1, os.path.join(ckpt_dir, "stage1"), 1).save()

    # Stage 2: self-distil the branches (train texts read as unlabelled text).
    net = fastbert.SelfDistillationNetwork(classifier.encoder, classifier.head, branches)
    if FLAGS.reuse and tf.train.latest_checkpoint(os.path.join(ckpt_dir, "stage2")):
        net({k: tf.constant(v[:1]) for k, v in train.items()})  # build the branches before restoring
        stage2.restore(tf.train.latest_checkpoint(os.path.join(ckpt_dir, "stage2"))).assert_existing_objects_matched()
        print(f"stage 2: restored from {ckpt_dir}")
    else:
        print(f"stage 2: self-distillation {FLAGS.distill_epochs:g} epochs")
        ds = fastbert.unlabelled_text_dataset(os.path.join(data_dir, "train.tsv"), tokenizer, FLAGS.max_seq_length,
                                              FLAGS.train_batch_size, seed=FLAGS.seed, text_column="text")
        trainer = TrainerModel(net, fastbert.self_distillation_loss_fn(),
                               fastbert.self_distillation_metric_names(len(branches)),
                               trainable_variables_fn=lambda: branches.trainable_variables)
        logs = _fit(trainer, ds, int(FLAGS.distill_epochs * steps_per_epoch), steps_per_epoch,
                    FLAGS.distill_learning_rate)
        print("  branch agreement with the final classifier (train, last epoch): "
              + " ".join(f"{logs[f'agreement_layer_{k}']:.3f}" for k in range(1, len(branches) + 1)))
        tf.train.CheckpointManager(stage2, os.path.join(ckpt_dir, "stage2"), 1).save()

    # Evaluation over speeds.
    dev_ds = tf.data.Dataset.from_tensor_slices(dev).batch(FLAGS.eval_batch_size)
    speeds = [float(s) for s in FLAGS.speeds]
    print(f"evaluate: {_load()}")
    best = None
    for r in range(max(1, FLAGS.repeats)):
        rows = fastbert_speed.evaluate_speeds(classifier.encoder, branches, classifier.head, dev_ds, speeds,
                                        num_warmup_batches=FLAGS.num_warmup_batches)
        if best is None:
            best = rows
        else:
            for b, row in zip(best, rows):
                b["examples_per_second"] = max(b["examples_per_second"], row["examples_per_second"])
    rows = best
    print(f"end: {_load()}")
    print(f"\nFastBERT on BBC News dev ({rows[0]['num_examples']} examples), batch {FLAGS.eval_batch_size}, "
          f"max_seq_length {FLAGS.max_seq_length}, {config.num_hidden_layers} layers hidden {config.hidden_size}, "
          f"CPU, fastest of {max(1, FLAGS.repeats)} pass(es):")
    print(fastbert_speed.format_speed_table(rows))
    fastbert_speed.log_speed_curve(os.path.join(FLAGS.work_dir, "logs", "eval"), rows, step=0)
    full = rows[0]
    for row in rows[1:]:
        if row["speed"] == 0.5:
            speedup = row["examples_per_second"] / full["examples_per_second"]
            drop = 100 * (full["accuracy"] - row["accuracy"])
            ok = speedup >= 2.0 and drop <= 1.0
            print(f"\nspeed 0.5: {speedup:.2f}x the full model's examples/s, accuracy {drop:+.2f} points lost "
                  f"-> target (>= 2x, <= 1 point) {'met' if ok else 'MISSED'}")


if __name__ == "__main__":
    app.run(main)
