"""The padded id batch the parity tests feed both bertkit and transformers: B examples of T ids below V, two of them
padded (ids and segments zero there), segment 1 from position 5."""
import numpy as np

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
