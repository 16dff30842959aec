"""JSON <-> tensors the way TF Serving's REST API does it (tensorflow_serving/util/json_tensor.cc).

- Requests: `instances` (row format, one item per batch row; objects keyed by input name when the signature has
  several inputs) or `inputs` (columnar: one value, or an object of input name -> whole tensor). Strings are UTF-8
  JSON strings; binary values are `{"b64": "..."}`. NaN / Infinity tokens are accepted.
- Responses: `predictions` (row) / `outputs` (columnar); a single output tensor is written without its name.
  Floats are written in their shortest round-trip form (float32 0.1 -> 0.1, whole numbers keep `.0`); string
  tensors whose name ends in `_bytes` (or that are not valid UTF-8) are written as `{"b64": ...}`.
- Classify / regress: `examples` (+ optional `context`) -> serialized tf.Example protos.
"""
import base64
import binascii
import json

import numpy as np

from tensorflow.core.example import example_pb2
from tensorflow.core.example import feature_pb2


class ServingError(Exception):
    """An error answered as {"error": message} with an HTTP status."""
    status = 500


class InvalidArgument(ServingError):
    status = 400


class NotFound(ServingError):
    status = 404


class RequestTooLarge(ServingError):
    status = 413


_INT_RANGES = {np.dtype(t): (np.iinfo(t).min, np.iinfo(t).max)
               for t in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64)}


def _short(value, limit=80):
    s = json.dumps(value)
    return s if len(s) <= limit else s[:limit] + "..."


def is_b64_object(v):
    return isinstance(v, dict) and len(v) == 1 and isinstance(v.get("b64"), str)


def decode_b64(v):
    try:
        return base64.b64decode(v["b64"], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgument(f"JSON Value: {_short(v)} not formatted correctly for base64 data") from None


def parse_json_body(body):
    if not body:
        raise InvalidArgument("JSON Parse error: The document is empty")
    try:
        doc = json.loads(body)
    except UnicodeDecodeError:
        raise InvalidArgument("JSON Parse error: body is not valid UTF-8") from None
    except json.JSONDecodeError as e:
        raise InvalidArgument(f"JSON Parse error: {e.msg} at offset: {e.pos}") from None
    except RecursionError:
        raise InvalidArgument("JSON Parse error: the document is nested too deeply") from None
    if not isinstance(doc, dict):
        raise InvalidArgument(f"JSON Value: {_short(doc)} Is not object")
    return doc


def _leaf_converter(np_dtype, name):
    """A function JSON leaf -> Python value of the tensor's type, raising InvalidArgument."""
    np_dtype = np.dtype(np_dtype)
    tname = np_dtype.name if np_dtype != object else "string"

    def type_error(v):
        return InvalidArgument(f"input '{name}': JSON value {_short(v)} is not of expected type {tname}")

    if np_dtype == object:
        def conv(v):
            if isinstance(v, str):
                return v.encode("utf-8")
            if is_b64_object(v):
                return decode_b64(v)
            raise type_error(v)
    elif np_dtype == np.bool_:
        def conv(v):
            if isinstance(v, bool):
                return v
            raise type_error(v)
    elif np_dtype.kind in "iu":
        lo, hi = _INT_RANGES[np_dtype]

        def conv(v):
            if isinstance(v, bool) or not isinstance(v, int):
                raise type_error(v)
            if not lo <= v <= hi:
                raise InvalidArgument(f"input '{name}': value {v} is out of range for {tname}")
            return v
    elif np_dtype.kind == "f":
        def conv(v):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise type_error(v)
            return v
    else:
        raise InvalidArgument(f"input '{name}': tensors of type {tname} are not supported over JSON")
    return conv


def json_to_array(value, np_dtype, name):
    """A JSON value (scalar or nested lists) -> numpy array of `np_dtype` (object for strings)."""
    shape, v = [], value
    while isinstance(v, list):
        shape.append(len(v))
        if not v:
            break
        v = v[0]
    np_dtype = np.dtype(np_dtype)
    conv = _leaf_converter(np_dtype, name)
    flat = []
    rank = len(shape)

    def fill(v, level):
        if isinstance(v, list):
            if level >= rank:
                raise InvalidArgument(f"input '{name}': encountered list at unexpected level {level}, expected "
                                      f"< {rank} (ragged or mixed nesting)")
            if len(v) != shape[level]:
                raise InvalidArgument(f"input '{name}': encountered list of size {len(v)} at level {level}, "
                                      f"expected size {shape[level]} (lists must be rectangular)")
            for x in v:
                fill(x, level + 1)
        else:
            if level != rank:
                raise InvalidArgument(f"input '{name}': JSON value {_short(v)} found at level {level}, expected "
                                      f"at level {rank} (ragged or mixed nesting)")
            flat.append(conv(v))

    fill(value, 0)
    if np_dtype == object:
        arr = np.empty(len(flat), dtype=object)
        for i, x in enumerate(flat):
            arr[i] = x
        return arr.reshape(shape)
    return np.asarray(flat, dtype=np_dtype).reshape(shape)


def decode_predict_request(doc, input_specs):
    """-> (format "row"|"columnar", {input name: np.ndarray}).  input_specs: {name: numpy dtype}."""
    names = sorted(input_specs)
    has_instances, has_inputs = "instances" in doc, "inputs" in doc
    if has_instances and has_inputs:
        raise InvalidArgument("Not formatted correctly: expecting only one of 'inputs' or 'instances' keys")
    if not names:
        raise InvalidArgument("the signature takes no inputs")
    if has_instances:
        instances = doc["instances"]
        if not isinstance(instances, list):
            raise InvalidArgument("Expecting 'instances' to be a list/array")
        if not instances:
            raise InvalidArgument("No values in 'instances' array")
        as_objects = isinstance(instances[0], dict) and not is_b64_object(instances[0])
        if not as_objects and len(names) > 1:
            raise InvalidArgument(f"instances is a plain list, but expecting list of objects as multiple input "
                                  f"tensors are required: {', '.join(names)}")
        columns = {n: [] for n in names}
        for i, item in enumerate(instances):
            if as_objects:
                if not isinstance(item, dict) or is_b64_object(item):
                    raise InvalidArgument(f"Expecting object but got {_short(item, 40)} at item {i} of instances")
                if set(item) != set(names):
                    extra, missing = sorted(set(item) - set(names)), sorted(set(names) - set(item))
                    raise InvalidArgument(
                        f"Failed to process element: {i} of 'instances' list. Keys must be equal to: "
                        f"{','.join(names)}" + (f"; unknown input(s): {','.join(extra)}" if extra else "")
                        + (f"; missing input(s): {','.join(missing)}" if missing else ""))
                for n in names:
                    columns[n].append(item[n])
            else:
                if isinstance(item, dict) and not is_b64_object(item):
                    raise InvalidArgument(f"Expecting value/list but got object at item {i} of instances")
                columns[names[0]].append(item)
        return "row", {n: json_to_array(columns[n], input_specs[n], n) for n in names}
    if has_inputs:
        value = doc["inputs"]
        if not isinstance(value, dict) or is_b64_object(value):
            if len(names) > 1:
                raise InvalidArgument(f"inputs is a plain value/list, but expecting an object as multiple input "
                                      f"tensors are required: {', '.join(names)}")
            return "columnar", {names[0]: json_to_array(value, input_specs[names[0]], names[0])}
        extra = sorted(set(value) - set(names))
        if extra:
            raise InvalidArgument(f"unknown input(s) {', '.join(extra)} in 'inputs' object; the signature takes "
                                  f"{', '.join(names)}")
        for n in names:
            if n not in value:
                raise InvalidArgument(f"Missing named input: {n} in 'inputs' object.")
        return "columnar", {n: json_to_array(value[n], input_specs[n], n) for n in names}
    raise InvalidArgument("Missing 'inputs' or 'instances' key")


ID_INPUTS = ("input_ids", "input_mask", "segment_ids")


def check_id_shapes(arrays):
    """BERT id inputs (input_ids with input_mask / segment_ids) must have one shape: InvalidArgument naming the two
    inputs that differ. Other inputs are not looked at."""
    if "input_ids" not in arrays:
        return
    shape = list(np.shape(arrays["input_ids"]))
    for name in ID_INPUTS[1:]:
        if name in arrays and list(np.shape(arrays[name])) != shape:
            raise InvalidArgument(f"input '{name}' has shape {list(np.shape(arrays[name]))} but 'input_ids' has "
                                  f"shape {shape}: input_ids, input_mask and segment_ids must have the same shape "
                                  "[batch, length] (one value per token)")


def _string_leaf(b, as_bytes):
    if not as_bytes:
        try:
            return b.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return {"b64": base64.b64encode(b).decode("ascii")}


def array_to_json(arr, name):
    """numpy array (or scalar) -> JSON-ready Python value."""
    arr = np.asarray(arr)
    if arr.dtype == object or arr.dtype.kind in "SU":
        as_bytes = name.endswith("_bytes")
        flat = arr.ravel().tolist()
        out = np.empty(len(flat), dtype=object)
        for i, b in enumerate(flat):
            out[i] = _string_leaf(b if isinstance(b, bytes) else str(b).encode("utf-8"), as_bytes)
        return out.reshape(arr.shape).tolist()
    if arr.dtype.kind == "f":
        if arr.dtype != np.float64:
            # shortest text that round-trips in the tensor's own precision, as TF Serving writes floats
            arr = arr.astype(np.float32 if arr.dtype.itemsize <= 4 else arr.dtype).astype(str).astype(np.float64)
        return arr.tolist()
    if arr.dtype.kind in "iub":
        return arr.tolist()
    raise ServingError(f"output '{name}': cannot write tensors of type {arr.dtype} as JSON")


def encode_predict_response(outputs, fmt):
    """outputs: {name: np.ndarray} (already filtered). -> dict response."""
    if not outputs:
        raise InvalidArgument("Cannot convert empty tensor map to JSON")
    names = sorted(outputs)
    if fmt == "columnar":
        if len(names) == 1:
            return {"outputs": array_to_json(outputs[names[0]], names[0])}
        return {"outputs": {n: array_to_json(outputs[n], n) for n in names}}
    batch = None
    for n in names:
        a = outputs[n]
        if np.ndim(a) == 0:
            raise InvalidArgument(f"Tensor name: {n} has no shape information (a scalar output cannot be written "
                                  f"in row format; use the columnar 'inputs' format)")
        if batch is not None and a.shape[0] != batch:
            raise InvalidArgument(f"Tensor name: {n} has inconsistent batch size: {a.shape[0]} expecting: {batch}")
        batch = a.shape[0]
    cols = {n: array_to_json(outputs[n], n) for n in names}
    if len(names) == 1:
        return {"predictions": cols[names[0]]}
    return {"predictions": [{n: cols[n][i] for n in names} for i in range(batch)]}


def dumps(obj):
    return json.dumps(obj, separators=(",", ":"), allow_nan=True)


# ---------------------------------------------------------------- classify / regress


def _feature_from_json(value, name):
    feature = feature_pb2.Feature()
    kind = None
    ints, floats, byts = [], [], []
    for v in (value if isinstance(value, list) else [value]):
        if isinstance(v, bool):
            k, x = "int", int(v)
        elif isinstance(v, int):
            if not -(2 ** 63) <= v < 2 ** 63:
                raise InvalidArgument(f"Feature: {name} has an integer out of int64 range")
            k, x = "int", v
        elif isinstance(v, float):
            k, x = "float", v
        elif isinstance(v, str):
            k, x = "bytes", v.encode("utf-8")
        elif is_b64_object(v):
            k, x = "bytes", decode_b64(v)
        else:
            raise InvalidArgument(f"Feature: {name} has element with unexpected JSON type: {_short(v, 40)}")
        if kind is None:
            kind = k
        elif kind != k:
            if {kind, k} == {"int", "float"}:  # 1 and 1.5 in one list: a float feature
                kind = "float"
            else:
                raise InvalidArgument(f"Unexpected element type in feature: {name} expecting type: {kind}")
        {"int": ints, "float": floats, "bytes": byts}[k].append(x)
    if kind == "int":
        feature.int64_list.value.extend(ints)
    elif kind == "float":
        feature.float_list.value.extend([float(x) for x in ints] + floats if ints else floats)
    elif kind == "bytes":
        feature.bytes_list.value.extend(byts)
    return feature


def _example_from_json(obj, what):
    if not isinstance(obj, dict):
        raise InvalidArgument(f"{what} must be a JSON object, got {_short(obj, 40)}")
    ex = example_pb2.Example()
    for name, value in obj.items():
        ex.features.feature[name].CopyFrom(_feature_from_json(value, name))
    return ex


def decode_examples(doc):
    """-> np.ndarray of serialized tf.Example bytes (object dtype), context merged into every example."""
    if "examples" not in doc:
        raise InvalidArgument("key 'examples' is expected and was not found")
    examples = doc["examples"]
    if not isinstance(examples, list):
        raise InvalidArgument("Expecting 'examples' value to be a list/array")
    if not examples:
        raise InvalidArgument("'examples' value is an empty array")
    context = _example_from_json(doc["context"], "context") if "context" in doc else None
    out = np.empty(len(examples), dtype=object)
    for i, obj in enumerate(examples):
        ex = _example_from_json(obj, f"example {i}")
        if context is not None:
            clash = sorted(set(ex.features.feature) & set(context.features.feature))
            if clash:
                raise InvalidArgument(f"example {i}: feature(s) {', '.join(clash)} also appear in 'context'")
            merged = example_pb2.Example()
            merged.CopyFrom(context)
            merged.MergeFrom(ex)
            ex = merged
        out[i] = ex.SerializeToString()
    return out
