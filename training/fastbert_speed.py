"""FastBERT's early-exit evaluation over speeds (training/fastbert.py holds the branches, the early-exit function and
the self-distillation training): accuracy, agreement with the full model, average exit layer, relative FLOPs and
examples/s per speed, the eval_results.txt keys, a text table and TensorBoard curves.

    rows = evaluate_speeds(encoder, branches, final_head, dev_dataset, [0, 0.1, 0.5])
    print(format_speed_table(rows)); log_speed_curve(log_dir, rows, step)
    results, rows_by_split = fastbert_speed_evaluation(setup, {"dev": dataset}, speeds, output_dir=output_dir)
"""
import math
import os
import time

import numpy as np
import tensorflow as tf

import bertkit_errors
import bertkit_io
from training.fastbert import as_sequence_head, flops_per_layer, make_early_exit_fn, make_full_model_fn, relative_flops

_FEATURE_KEYS = ("input_ids", "input_mask", "segment_ids")


def default_flops(encoder, branches, seq_length, num_labels):
    """`flops_per_layer` from `encoder.config` (hidden_size, intermediate_size) and the branches' width. Ignores
    MobileBERT's bottlenecks and ALBERT's embedding projection (per-layer cost of a plain BERT layer)."""
    config = getattr(encoder, "config", None)
    if config is None:
        raise ValueError("the encoder has no .config: pass flops=flops_per_layer(...) explicitly")
    branch_hidden = branches[0].branch_hidden_size if len(branches) else 128
    return flops_per_layer(seq_length, config.hidden_size, config.intermediate_size, branch_hidden, num_labels)


def _timed_pass(fn, feeds, num_warmup_batches):
    for feed in feeds[:max(0, int(num_warmup_batches))]:
        tf.nest.map_structure(lambda t: t.numpy(), fn(feed))
    start = time.perf_counter()
    outs = [tf.nest.map_structure(lambda t: t.numpy(), fn(feed)) for feed in feeds]
    return outs, time.perf_counter() - start


def evaluate_speeds(encoder, branches, final_head, dataset, speeds, label_key="label_ids",
                    weight_key="is_real_example", flops=None, num_warmup_batches=1):
    """Early-exit evaluation at each speed, next to the full model, on a finite batched `dataset` of feature dicts.

    The batches are read into memory first, then for the full model (`make_full_model_fn`) and each speed
    (`make_early_exit_fn`) `num_warmup_batches` batches are run untimed and the whole dataset is timed batch by
    batch. Rows with `weight_key` 0 (padding) count in examples/s (they are computed) but not in the metrics.
    `flops`: a `flops_per_layer(...)` dict, default from `encoder.config` at the padded sequence length.

    Returns a list of dicts, the "full_model" row first, then one row per speed in the given order, each with
    name ("full_model" / "speed_<s>"), speed (None for the full model), accuracy (None without `label_key` in the
    data), agreement (fraction predicting the full model's class), avg_exit_layer, relative_flops,
    examples_per_second, num_examples (real ones), seconds (timed)."""
    speeds = [float(s) for s in speeds]
    for s in speeds:
        if not 0.0 <= s <= 1.0 or math.isnan(s):
            raise bertkit_errors.UserError(f"--speed={s:g}: speeds must be in [0, 1]")
    head = as_sequence_head(encoder, final_head)
    feeds, labels, weights = [], [], []
    for batch in dataset:
        feed = {k: tf.cast(batch[k], tf.int32) for k in _FEATURE_KEYS}
        feeds.append(feed)
        n = int(feed["input_ids"].shape[0])
        labels.append(np.reshape(batch[label_key].numpy(), [-1]) if label_key and label_key in batch else None)
        weights.append(np.reshape(batch[weight_key].numpy(), [-1]).astype(np.float64)
                       if weight_key and weight_key in batch else np.ones([n]))
    if not feeds:
        raise bertkit_errors.UserError("evaluation data: no examples")
    has_labels = all(lab is not None for lab in labels)
    labels = np.concatenate(labels).astype(np.int64) if has_labels else None
    weights = np.concatenate(weights)
    real = weights > 0
    num_rows = len(weights)
    num_layers = encoder.num_layers

    early = make_early_exit_fn(encoder, branches, head)
    full = make_full_model_fn(encoder, head)
    if flops is None:
        num_labels = int(full(feeds[0]).shape[-1])
        flops = default_flops(encoder, branches, int(feeds[0]["input_ids"].shape[1]), num_labels)

    def weighted(values):
        return float(np.sum(values * weights) / max(np.sum(weights), 1e-12))

    outs, seconds = _timed_pass(full, feeds, num_warmup_batches)
    full_pred = np.concatenate([o.argmax(-1) for o in outs])
    rows = [{
        "name": "full_model", "speed": None,
        "accuracy": weighted(full_pred == labels) if has_labels else None,
        "agreement": 1.0, "avg_exit_layer": float(num_layers), "relative_flops": 1.0,
        "examples_per_second": num_rows / seconds if seconds > 0 else float("inf"),
        "num_examples": int(real.sum()), "seconds": seconds,
    }]
    for speed in speeds:
        speed_t = tf.constant(speed, tf.float32)
        outs, seconds = _timed_pass(lambda feed: early(feed, speed_t), feeds, num_warmup_batches)
        pred = np.concatenate([o["probabilities"].argmax(-1) for o in outs])
        exits = np.concatenate([o["exit_layer"] for o in outs])
        rows.append({
            "name": f"speed_{speed:g}", "speed": speed,
            "accuracy": weighted(pred == labels) if has_labels else None,
            "agreement": weighted(pred == full_pred),
            "avg_exit_layer": weighted(exits.astype(np.float64)),
            "relative_flops": relative_flops(exits[real], num_layers, flops),
            "examples_per_second": num_rows / seconds if seconds > 0 else float("inf"),
            "num_examples": int(real.sum()), "seconds": seconds,
        })
    return rows


def speed_results_for_eval_file(rows):
    """Flat `key -> float` for eval_results.txt: speed_<s>_{accuracy,agreement,avg_exit_layer,relative_flops,
    examples_per_second} per speed row, full_model_{accuracy,examples_per_second}. None values are left out."""
    out = {}
    for row in rows:
        if row["speed"] is None:
            keys = ("accuracy", "examples_per_second")
        else:
            keys = ("accuracy", "agreement", "avg_exit_layer", "relative_flops", "examples_per_second")
        for key in keys:
            if row.get(key) is not None:
                out[f"{row['name']}_{key}"] = float(row[key])
    return out


def format_speed_table(rows):
    """A fixed-width text table of `evaluate_speeds` rows, with the examples/s speed-up over the full model."""
    full = next((r for r in rows if r["speed"] is None), None)
    base = full["examples_per_second"] if full else None

    def fmt(v, spec):
        return "-" if v is None else format(v, spec)

    lines = [f"{'speed':>10} {'accuracy':>9} {'agreement':>9} {'avg_exit':>8} {'rel_flops':>9} {'examples/s':>11} "
             f"{'speedup':>8}"]
    for r in rows:
        label = "full" if r["speed"] is None else f"{r['speed']:g}"
        speedup = r["examples_per_second"] / base if base else None
        lines.append(f"{label:>10} {fmt(r['accuracy'], '.4f'):>9} {fmt(r.get('agreement'), '.4f'):>9} "
                     f"{r['avg_exit_layer']:>8.2f} {r['relative_flops']:>9.3f} {r['examples_per_second']:>11.1f} "
                     f"{fmt(speedup, '.2f') + ('x' if speedup else ''):>8}")
    return "\n".join(lines)


# A 3x5 bitmap font for the plot's tick labels (digits and ".").
_GLYPHS = {
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111", "3": "111001111001111",
    "4": "101101111001001", "5": "111100111001111", "6": "111100111101111", "7": "111001001001001",
    "8": "111101111101111", "9": "111101111001111", ".": "000000000000010",
}


def _draw_text(img, text, x, y, color, scale=2):
    for ch in text:
        bits = _GLYPHS.get(ch)
        if bits is not None:
            glyph = np.array([int(b) for b in bits], bool).reshape(5, 3)
            glyph = np.kron(glyph, np.ones((scale, scale), bool))
            region = img[y:y + glyph.shape[0], x:x + glyph.shape[1]]
            region[glyph[:region.shape[0], :region.shape[1]]] = color
        x += 4 * scale


def _draw_line(img, x0, y0, x1, y1, color, width=2):
    n = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
    xs = np.round(np.linspace(x0, x1, n)).astype(int)
    ys = np.round(np.linspace(y0, y1, n)).astype(int)
    for dx in range(-(width // 2), width - width // 2):
        for dy in range(-(width // 2), width - width // 2):
            xx, yy = np.clip(xs + dx, 0, img.shape[1] - 1), np.clip(ys + dy, 0, img.shape[0] - 1)
            img[yy, xx] = color


def render_speed_curve(rows, width=480, height=360):
    """uint8 [H, W, 3] plot (numpy only; matplotlib is not a dependency): y = accuracy (agreement with the full
    model when there are no labels), x = relative FLOPs; blue points/line for the speeds in order, a red point for
    the full model; tick labels on both axes."""
    key = "accuracy" if all(r.get("accuracy") is not None for r in rows) else "agreement"
    pts = [(r["relative_flops"], r[key], r["speed"] is None) for r in rows if r.get(key) is not None]
    img = np.full([height, width, 3], 255, np.uint8)
    left, right, top, bottom = 60, 20, 20, 40
    x_max = max([1.0] + [p[0] for p in pts]) * 1.05
    y_lo = min([p[1] for p in pts] + [1.0])
    y_lo = max(0.0, math.floor((y_lo - 0.02) * 20) / 20)
    y_hi = 1.0 if y_lo < 1.0 else 1.05

    def to_px(x, y):
        px = left + (x / x_max) * (width - left - right)
        py = height - bottom - (y - y_lo) / (y_hi - y_lo) * (height - top - bottom)
        return px, py

    grey, black = (220, 220, 220), (0, 0, 0)
    for i in range(6):  # grid + ticks
        xv = x_max * i / 5
        px, _ = to_px(xv, y_lo)
        _draw_line(img, px, top, px, height - bottom, grey, 1)
        _draw_text(img, f"{xv:.2f}", int(px) - 14, height - bottom + 8, black)
        yv = y_lo + (y_hi - y_lo) * i / 5
        _, py = to_px(0, yv)
        _draw_line(img, left, py, width - right, py, grey, 1)
        _draw_text(img, f"{yv:.2f}", 8, int(py) - 5, black)
    _draw_line(img, left, top, left, height - bottom, black, 2)
    _draw_line(img, left, height - bottom, width - right, height - bottom, black, 2)
    curve = [to_px(x, y) for x, y, is_full in pts if not is_full]
    for (x0, y0), (x1, y1) in zip(curve, curve[1:]):
        _draw_line(img, x0, y0, x1, y1, (40, 90, 200), 2)
    for x, y, is_full in pts:
        px, py = to_px(x, y)
        color = (210, 30, 30) if is_full else (40, 90, 200)
        y0, x0 = int(py) - 4, int(px) - 4
        img[max(0, y0):max(0, y0 + 9), max(0, x0):max(0, x0 + 9)] = color
    return img


def log_speed_curve(log_dir, rows, step):
    """TensorBoard summaries of `evaluate_speeds` rows under `log_dir`: scalars fastbert/{accuracy,agreement,
    avg_exit_layer,relative_flops,examples_per_second}_by_speed with step = int(round(speed * 100)),
    fastbert/accuracy_by_relative_flops with step = int(round(relative_flops * 100)), the full model's values
    under fastbert/full_model_* at `step`, a text table and an image plot (fastbert/speed_accuracy_curve: accuracy
    vs relative FLOPs) at `step`."""
    writer = tf.summary.create_file_writer(log_dir)
    with writer.as_default():
        for row in rows:
            metrics = {k: row.get(k) for k in ("accuracy", "agreement", "avg_exit_layer", "relative_flops",
                                               "examples_per_second")}
            if row["speed"] is None:
                for k, v in metrics.items():
                    if v is not None:
                        tf.summary.scalar(f"fastbert/full_model_{k}", v, step=int(step))
                continue
            x = int(round(row["speed"] * 100))
            for k, v in metrics.items():
                if v is not None:
                    tf.summary.scalar(f"fastbert/{k}_by_speed", v, step=x)
            if row.get("accuracy") is not None:
                tf.summary.scalar("fastbert/accuracy_by_relative_flops", row["accuracy"],
                                  step=int(round(row["relative_flops"] * 100)))
        tf.summary.text("fastbert/speed_table", "```\n" + format_speed_table(rows) + "\n```", step=int(step))
        tf.summary.image("fastbert/speed_accuracy_curve", render_speed_curve(rows)[None], step=int(step))
    writer.flush()
    writer.close()


def fastbert_speed_evaluation(setup, datasets, speeds, *, output_dir=None, global_step=0, print_fn=print):
    """Early-exit evaluation of a FastBERT setup on every dev split ({split: dataset}) at each speed
    (`evaluate_speeds`). Returns (flat results for eval_results.txt, prefixed `<split>/` with
    several splits, {split: rows}). With `output_dir`: the table is written to output_dir/speed_table.txt and the
    speed/accuracy curve logged under output_dir/logs/eval at global_step."""
    results, all_rows, tables = {}, {}, []
    prefix = len(datasets) > 1
    for split, dataset in datasets.items():
        rows = evaluate_speeds(setup.encoder, setup.branches, setup.classifier.head, dataset, speeds)
        all_rows[split] = rows
        flat = speed_results_for_eval_file(rows)
        results.update({(f"{split}/{k}" if prefix else k): v for k, v in flat.items()})
        table = format_speed_table(rows)
        tables.append((f"{split}:\n" if prefix else "") + table)
        print_fn(f"FastBERT early exit on {split}:\n{table}")
        if output_dir is not None:
            log_dir = os.path.join(output_dir, "logs", "eval" if not prefix else os.path.join("eval", split))
            log_speed_curve(log_dir, rows, int(global_step))
    if output_dir is not None:
        with bertkit_io.atomic_write(os.path.join(output_dir, "speed_table.txt")) as f:
            f.write("\n\n".join(tables) + "\n")
    return results, all_rows
