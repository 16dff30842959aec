"""What the parity tests build their references from: the padded id batch they feed both bertkit and transformers
(B examples of T ids below V, two of them padded: ids and segments zero there, segment 1 from position 5), and TF1
checkpoints written the way Google's repositories wrote them."""
import numpy as np
import tensorflow as tf

B, T, V = 3, 11, 97


def parity_inputs():
    rng = np.random.default_rng(0)
    ids = rng.integers(1, V, size=(B, T)).astype(np.int64)
    mask = np.ones((B, T), np.int64)
    mask[1, 7:] = 0
    mask[2, 3:] = 0
    ids[mask == 0] = 0
    seg = np.zeros((B, T), np.int64)
    seg[:, 5:] = 1
    seg[mask == 0] = 0
    return ids, mask, seg


def write_tf1_checkpoint(tensors, prefix):
    """Write {original TF1 name: array} with tf.compat.v1 variables and a Saver, as the Google repos did."""
    with tf.Graph().as_default():
        variables = [tf.compat.v1.get_variable(name, initializer=tf.constant(value)) for name, value in tensors.items()]
        saver = tf.compat.v1.train.Saver(variables)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            saver.save(sess, prefix, write_meta_graph=False)
