"""Initialise a narrower, shallower BERT student from its teacher's weights (structured pruning).

A TinyBERT student trained from random weights learns the teacher's knowledge from the distillation data alone; on a
small corpus that is not much. Pruning gives the student a start inside the teacher's function instead (as in
Minitron, Muralidharan et al. 2024: prune the width, keep chosen layers, then distil):

- layers: student layer k takes the weights of teacher layer `layers[k]` (the layer mapping's attention targets);
- hidden (residual) width: the `hidden_size` residual dimensions with the largest mean absolute activation over the
  teacher's hidden states on calibration inputs, the same ones everywhere (embeddings, every LayerNorm, every
  projection's input rows and output columns, the pooler);
- attention: the student keeps the teacher's head count; per head the `head_size` query/key dimensions with the
  largest ||W_q[:, j]|| * ||W_k[:, j]|| and value/output dimensions with the largest ||W_v[:, j]|| * ||W_o[j, :]||.
  The query is scaled by sqrt(d_student / d_teacher), so a head's score keeps the teacher's 1/sqrt(d_teacher) scale;
- feed-forward: the `intermediate_size` neurons with the largest ||W_in[:, j]|| * ||W_out[j, :]||.

Pruned LayerNorms see fewer dimensions, so the student is not the teacher's function exactly: distillation then
recovers it. Only BERT encoders (post-LayerNorm, fused QKV) are supported.
"""
import numpy as np

from bertkit_errors import UserError


def _np(v):
    return np.asarray(v.numpy(), dtype=np.float32)


def check_prunable(teacher_config, student_config, layers):
    """UserError unless the student can be cut from the teacher: both BERT, the same head count and vocabulary, no
    dimension or layer count larger than the teacher's, every layer index inside the teacher."""
    t, s = teacher_config, student_config
    for c, who in ((t, "teacher"), (s, "student")):
        if c.model_type != "bert":
            raise UserError(f"pruning: the {who} is {c.model_type}; only BERT encoders can be pruned")
    for key in ("vocab_size", "type_vocab_size", "num_attention_heads", "hidden_act"):
        if getattr(t, key) != getattr(s, key):
            raise UserError(f"pruning: the student's {key} ({getattr(s, key)}) differs from the teacher's "
                            f"({getattr(t, key)})")
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "max_position_embeddings"):
        if getattr(s, key) > getattr(t, key):
            raise UserError(f"pruning: the student's {key} ({getattr(s, key)}) is larger than the teacher's "
                            f"({getattr(t, key)})")
    if len(layers) != s.num_hidden_layers or not all(0 <= i < t.num_hidden_layers for i in layers):
        raise UserError(f"pruning: teacher layers {list(layers)} do not fit a {s.num_hidden_layers}-layer student "
                        f"and a {t.num_hidden_layers}-layer teacher")


def residual_importance(teacher, inputs):
    """Mean |activation| of each residual dimension over the teacher's hidden states (embeddings and every layer),
    over the non-padding tokens of `inputs` (a dict of input_ids / input_mask / segment_ids)."""
    out = teacher(inputs, training=False, output_hidden_states=True)
    mask = np.asarray(inputs["input_mask"], np.float32)[..., None]
    total = np.zeros([teacher.config.hidden_size], np.float64)
    for h in out["hidden_states"]:
        total += (np.abs(np.asarray(h, np.float32)) * mask).sum(axis=(0, 1))
    return total / max(mask.sum() * len(out["hidden_states"]), 1.0)


def _top(scores, k):
    """Indices of the k largest scores, in increasing index order (keeps the original dimension order)."""
    return np.sort(np.argsort(-np.asarray(scores), kind="stable")[:k])


def prune_into(teacher, student, layers, importance):
    """Assign pruned teacher weights to the built `student` encoder. `importance`: residual_importance(...)."""
    tc, sc = teacher.config, student.config
    check_prunable(tc, sc, layers)
    hid = _top(importance, sc.hidden_size)
    n = tc.num_attention_heads
    dt, ds = tc.hidden_size // n, sc.hidden_size // n

    te, se = teacher.embeddings, student.embeddings
    se.word_embeddings.assign(_np(te.word_embeddings)[:, hid])
    se.position_embeddings.assign(_np(te.position_embeddings)[:sc.max_position_embeddings, hid])
    se.token_type_embeddings.assign(_np(te.token_type_embeddings)[:, hid])
    _norm(te.norm, se.norm, hid)

    for k, ti in enumerate(layers):
        tb, sb = teacher._block_list[ti], student._block_list[k]
        ta, sa = tb.attention, sb.attention
        qkv, qkv_b = _np(ta.qkv_kernel)[hid], _np(ta.qkv_bias)
        h = tc.hidden_size
        q, k_, v = qkv[:, :h], qkv[:, h:2 * h], qkv[:, 2 * h:]
        qb, kb, vb = qkv_b[:h], qkv_b[h:2 * h], qkv_b[2 * h:]
        o = _np(ta.output_kernel)[:, hid]
        qk_cols, vo_cols = [], []
        for head in range(n):
            cols = np.arange(head * dt, (head + 1) * dt)
            qk = np.linalg.norm(q[:, cols], axis=0) * np.linalg.norm(k_[:, cols], axis=0)
            vo = np.linalg.norm(v[:, cols], axis=0) * np.linalg.norm(o[cols], axis=1)
            qk_cols.append(cols[_top(qk, ds)])
            vo_cols.append(cols[_top(vo, ds)])
        qk_cols, vo_cols = np.concatenate(qk_cols), np.concatenate(vo_cols)
        scale = np.sqrt(ds / dt)
        sa.qkv_kernel.assign(np.concatenate([q[:, qk_cols] * scale, k_[:, qk_cols], v[:, vo_cols]], axis=1))
        sa.qkv_bias.assign(np.concatenate([qb[qk_cols] * scale, kb[qk_cols], vb[vo_cols]]))
        sa.output_kernel.assign(o[vo_cols])
        sa.output_bias.assign(_np(ta.output_bias)[hid])
        _norm(tb.attention_norm, sb.attention_norm, hid)

        w_in, w_out = _np(tb.intermediate.kernel)[hid], _np(tb.output_dense.kernel)[:, hid]
        ffn = _top(np.linalg.norm(w_in, axis=0) * np.linalg.norm(w_out, axis=1), sc.intermediate_size)
        sb.intermediate.kernel.assign(w_in[:, ffn])
        sb.intermediate.bias.assign(_np(tb.intermediate.bias)[ffn])
        sb.output_dense.kernel.assign(w_out[ffn])
        sb.output_dense.bias.assign(_np(tb.output_dense.bias)[hid])
        _norm(tb.output_norm, sb.output_norm, hid)

    if teacher.pooler is not None and student.pooler is not None:
        student.pooler.kernel.assign(_np(teacher.pooler.kernel)[hid][:, hid])
        student.pooler.bias.assign(_np(teacher.pooler.bias)[hid])
    return hid


def _norm(t, s, idx):
    s.gamma.assign(_np(t.gamma)[idx])
    s.beta.assign(_np(t.beta)[idx])
