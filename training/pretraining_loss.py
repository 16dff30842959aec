"""The original run_pretraining.py objective for TrainerModel: masked-LM loss over the masked positions plus the
sentence-pair loss (NSP, or SOP when the records' `next_sentence_labels` mean "swapped").

    trainer = TrainerModel(model, pretraining_loss_fn("next_sentence"), pretraining_metric_names("next_sentence"))
"""
import tensorflow as tf


def pretraining_metric_names(sentence_task="next_sentence"):
    """Metric names of `pretraining_loss_fn`; sentence_task is "next_sentence" (NSP) or "sentence_order" (SOP)."""
    return ["masked_lm_loss", "masked_lm_accuracy", f"{sentence_task}_loss", f"{sentence_task}_accuracy"]


def pretraining_loss_fn(sentence_task="next_sentence"):
    """loss_fn for TrainerModel over `{"mlm_logits" [B,P,V], "nsp_logits" [B,2]}` outputs.

    loss = sum(w * CE) / (sum(w) + 1e-5) over masked positions + mean CE of the sentence-pair labels (NSP, or SOP
    when the records' `next_sentence_labels` mean "swapped"), exactly the original objective.
    """
    def loss_fn(features, outputs):
        mlm_logits = tf.cast(outputs["mlm_logits"], tf.float32)
        nsp_logits = tf.cast(outputs["nsp_logits"], tf.float32)
        label_ids = tf.cast(features["masked_lm_ids"], tf.int32)
        weights = tf.cast(features["masked_lm_weights"], tf.float32)
        per_position = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=label_ids, logits=mlm_logits)
        mlm_loss = tf.reduce_sum(per_position * weights) / (tf.reduce_sum(weights) + 1e-5)
        mlm_correct = tf.cast(tf.equal(tf.argmax(mlm_logits, -1, output_type=tf.int32), label_ids), tf.float32)

        ns_labels = tf.reshape(tf.cast(features["next_sentence_labels"], tf.int32), [-1])
        per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=ns_labels, logits=nsp_logits)
        ns_loss = tf.reduce_mean(per_example)
        ns_correct = tf.cast(tf.equal(tf.argmax(nsp_logits, -1, output_type=tf.int32), ns_labels), tf.float32)
        metrics = {
            "masked_lm_loss": (per_position, weights),
            "masked_lm_accuracy": (mlm_correct, weights),
            f"{sentence_task}_loss": (per_example, None),
            f"{sentence_task}_accuracy": (ns_correct, None),
        }
        return mlm_loss + ns_loss, metrics

    return loss_fn


__all__ = ["pretraining_loss_fn", "pretraining_metric_names"]
