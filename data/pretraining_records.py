"""Serialized tf.train.Example bytes for many records at once, with numpy only (no TensorFlow, no protobuf).

Wire format (proto3, packed repeated scalars), per record:
  Example   := 0x0A len Features
  Features  := (0x0A len MapEntry)*            one entry per feature
  MapEntry  := 0x0A len key  0x12 len Feature
  Feature   := 0x1A len Int64List | 0x12 len FloatList
  Int64List := 0x0A len varint*                FloatList := 0x0A len float32-le*

Every piece of a record is laid out in a [B, W] byte matrix with a validity mask (a varint of up to k bytes takes k
columns, of which the first `nbytes` are valid); the records are the valid bytes in row-major order, so one boolean
compaction yields all records back to back. `tests/data/test_schema.py` checks the bytes against
tf.train.Example parsing.
"""
import struct

import google_crc32c as _crc32c
import numpy as np

PRETRAINING_LAYOUT = (
    ("input_ids", "int64"), ("input_mask", "int64"), ("segment_ids", "int64"), ("masked_lm_positions", "int64"),
    ("masked_lm_ids", "int64"), ("masked_lm_weights", "float"), ("next_sentence_labels", "int64"))

_TAG_INT64_LIST = 0x1A
_TAG_FLOAT_LIST = 0x12


def varint_size(v):
    """Bytes of the varint encoding of non-negative int64 values (elementwise)."""
    v = np.asarray(v, dtype=np.int64)
    size = np.ones(v.shape, dtype=np.int64)
    top = int(v.max()) if v.size else 0
    j = 1
    while j < 10 and top >= (1 << (7 * j)):
        size += v >= (1 << (7 * j))
        j += 1
    return size


def _scalar_varint_size(x):
    return max(1, (int(x).bit_length() + 6) // 7)


def varint_columns(v, max_bytes):
    """Non-negative int64 [B, K] -> (bytes uint8 [B, K*max_bytes], valid bool [B, K*max_bytes])."""
    v = np.asarray(v, dtype=np.int64)
    b, k = v.shape
    out = np.empty((b, k, max_bytes), dtype=np.uint8)
    valid = np.empty((b, k, max_bytes), dtype=bool)
    for j in range(max_bytes):
        more = v >= (1 << (7 * (j + 1))) if j + 1 < max_bytes else np.zeros(v.shape, bool)
        out[:, :, j] = ((v >> (7 * j)) & 0x7F) | (more.astype(np.uint8) << 7)
        valid[:, :, j] = v >= (1 << (7 * j)) if j else True
    return out.reshape(b, k * max_bytes), valid.reshape(b, k * max_bytes)


def _max_bytes(v):
    return _scalar_varint_size(v.max()) if v.size else 1


_LUT_CACHE = {}
_LUT_LIMIT = 1 << 21  # values below this are encoded by table look-up (3 bytes at most)


def _varint_lut(size):
    """Tables over values 0..size-1 (cached): varint bytes packed in a uint32 (little-endian), the matching
    validity flags packed the same way (view as 4 bools), and the byte count."""
    size = max(size, 1 << 14)
    size = 1 << int(np.ceil(np.log2(size)))
    if size not in _LUT_CACHE:
        data, valid = varint_columns(np.arange(size, dtype=np.int64)[:, None], 3)
        pad = np.zeros((size, 1), dtype=np.uint8)
        code = np.ascontiguousarray(np.concatenate([data, pad], axis=1)).view("<u4")[:, 0]
        flags = np.ascontiguousarray(np.concatenate([valid, pad.astype(bool)], axis=1)).view("<u4")[:, 0]
        _LUT_CACHE[size] = (code, flags, valid.sum(axis=1).astype(np.int64))
    return _LUT_CACHE[size]


def _encode_varints(value):
    """int [B, K] >= 0 -> (bytes [B, K*m] or [B, K, m], valid (same shape) or None when all valid, payload length
    [B])."""
    b, k = value.shape
    top = int(value.max()) if value.size else 0
    if top < 128:  # one byte each: the payload is the values themselves
        data = value.view(np.uint8) if value.dtype.itemsize == 1 else value.astype(np.uint8)
        return data, None, np.full(b, k, dtype=np.int64)
    if top < _LUT_LIMIT:
        code, flags, nbytes = _varint_lut(top + 1)
        # 3 bytes per value (the 4th byte of the packed table entry is never used)
        data = np.take(code, value).view(np.uint8).reshape(b, k, 4)[:, :, :3]
        valid = np.take(flags, value).view(bool).reshape(b, k, 4)[:, :, :3]
        return data, valid, np.take(nbytes, value).sum(axis=1)
    value = value.astype(np.int64)
    data, valid = varint_columns(value, _max_bytes(value))
    return data, valid, valid.sum(axis=1)


def serialize_examples(features, layout):
    """dict name -> [B, n] arrays (int64 >= 0, or float32 for 'float' features) -> (uint8 blob, int64 lengths [B]).

    The blob is the B serialized tf.train.Example records back to back, in row order.
    """
    b = len(next(iter(features.values())))
    pieces = []  # (kind, payload) in record order; kind: "const" bytes | "varint" lengths [B] | "data" (bytes, valid)
    entry_lens = []
    for name, kind in layout:
        value = features[name]
        key = name.encode()
        if kind == "float":
            payload = np.ascontiguousarray(value, dtype="<f4").view(np.uint8).reshape(b, -1)
            pay_valid = None
            pay_len = np.full(b, payload.shape[1], dtype=np.int64)
            tag = _TAG_FLOAT_LIST
        else:
            value = np.asarray(value).reshape(b, -1)
            if value.dtype.kind not in "biu":
                raise ValueError(f"{name}: integer values expected, got {value.dtype}")
            if value.dtype.kind == "i" and value.size and value.min() < 0:
                raise ValueError(f"{name}: negative values are not supported")
            payload, pay_valid, pay_len = _encode_varints(value)
            tag = _TAG_INT64_LIST
        list_len = 1 + varint_size(pay_len) + pay_len
        feat_len = 1 + varint_size(list_len) + list_len
        entry_len = 2 + len(key) + 1 + varint_size(feat_len) + feat_len
        entry_lens.append(entry_len)
        pieces += [("const", b"\x0a"), ("varint", entry_len), ("const", b"\x0a" + bytes([len(key)]) + key + b"\x12"),
                   ("varint", feat_len), ("const", bytes([tag])), ("varint", list_len), ("const", b"\x0a"),
                   ("varint", pay_len), ("data", (payload, pay_valid))]
    features_len = sum(1 + varint_size(e) + e for e in entry_lens)
    pieces = [("const", b"\x0a"), ("varint", features_len)] + pieces
    # merge adjacent constants, encode the per-row lengths
    merged = []
    for kind, item in pieces:
        if kind == "const" and merged and merged[-1][0] == "const":
            merged[-1] = ("const", merged[-1][1] + item)
            continue
        if kind == "varint":
            v = np.asarray(item, dtype=np.int64).reshape(b, 1)
            lo, hi = _scalar_varint_size(v.min()), _scalar_varint_size(v.max())
            data, ok = varint_columns(v, hi)
            kind, item = "data", (data, None if lo == hi else ok)
        merged.append((kind, item))
    widths = [len(item) if kind == "const" else int(np.prod(item[0].shape[1:])) for kind, item in merged]
    total = sum(widths)
    out = np.empty((b, total), dtype=np.uint8)
    valid = np.ones((b, total), dtype=bool)
    any_invalid = False
    col = 0
    for (kind, item), w in zip(merged, widths):
        if kind == "const":
            out[:, col:col + w] = np.frombuffer(item, dtype=np.uint8)
        else:
            data, ok = item
            out[:, col:col + w].reshape(data.shape)[...] = data
            if ok is not None:
                valid[:, col:col + w].reshape(ok.shape)[...] = ok
                any_invalid = True
        col += w
    if not any_invalid:
        return out.reshape(-1), np.full(b, total, dtype=np.int64)
    return out[valid], valid.sum(axis=1)


def serialize_pretraining(features):
    return serialize_examples(features, PRETRAINING_LAYOUT)


def split_records(blob, ends):
    """Concatenated records + end offsets -> list of bytes (tests and small outputs)."""
    data = bytes(blob)
    starts = [0] + list(ends[:-1])
    return [data[s:e] for s, e in zip(starts, ends)]


# ---- TFRecord framing (uint64 length, masked crc32c of the length, data, masked crc32c of the data) ----------------
# The C CRC32C lets worker processes frame records, so the main process only copies bytes; with the pure-Python
# implementation the writer falls back to tf.io.TFRecordWriter in the main process.
HAVE_FAST_CRC32C = _crc32c.implementation == "c"

_MASK_DELTA = 0xA282EAD8


def masked_crc32c(data):
    crc = _crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame_tfrecords(blob, ends):
    """Serialized records back to back -> (TFRecord-framed bytes, int64 end offsets of the framed records)."""
    data = bytes(blob)
    header_cache = {}
    parts = []
    append = parts.append
    pack_crc = struct.Struct("<I").pack
    start = 0
    for end in ends.tolist():
        n = end - start
        header = header_cache.get(n)
        if header is None:
            length = struct.pack("<Q", n)
            header = header_cache[n] = length + pack_crc(masked_crc32c(length))
        record = data[start:end]
        append(header)
        append(record)
        append(pack_crc(masked_crc32c(record)))
        start = end
    framed_ends = np.asarray(ends, dtype=np.int64) + 16 * np.arange(1, len(ends) + 1, dtype=np.int64)
    return b"".join(parts), framed_ends
