#!/usr/bin/env python3
"""gguf_read.py: a small GGUF (version 2 and 3, little-endian) reader for the tests.

Written from the GGUF specification (ggml docs/gguf.md):

    header:  "GGUF", uint32 version, uint64 tensor_count, uint64 metadata_kv_count
    kv:      string key, uint32 value_type, value
             (string = uint64 length + UTF-8 bytes;
              array  = uint32 element type, uint64 count, elements)
    tensor:  string name, uint32 n_dims, uint64 ne[n_dims] (ne[0] varies fastest),
             uint32 ggml_type, uint64 offset (relative to the data section)
    data:    starts at the next multiple of general.alignment (default 32)

    python3 tests/gguf_read.py FILE.gguf    prints the metadata and tensor table
"""

import struct
import sys

import numpy as np

import gguf_quants

# Metadata value types.
UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)
SCALAR_FORMATS = {UINT8: "<B", INT8: "<b", UINT16: "<H", INT16: "<h", UINT32: "<I", INT32: "<i",
                  FLOAT32: "<f", BOOL: "<?", UINT64: "<Q", INT64: "<q", FLOAT64: "<d"}
SCALAR_DTYPES = {UINT8: "<u1", INT8: "<i1", UINT16: "<u2", INT16: "<i2", UINT32: "<u4", INT32: "<i4",
                 FLOAT32: "<f4", BOOL: "<u1", UINT64: "<u8", INT64: "<i8", FLOAT64: "<f8"}
TYPE_NAMES = {UINT8: "uint8", INT8: "int8", UINT16: "uint16", INT16: "int16", UINT32: "uint32",
              INT32: "int32", FLOAT32: "float32", BOOL: "bool", STRING: "string", ARRAY: "array",
              UINT64: "uint64", INT64: "int64", FLOAT64: "float64"}

# ggml tensor types this reader can turn into numbers: type -> (name, block size, bytes per block).
# The decoders live in gguf_quants.py (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
# Q2_K..Q6_K, IQ4_NL, IQ4_XS).
GGML_F32, GGML_F16, GGML_Q4_0, GGML_Q8_0, GGML_BF16 = 0, 1, 2, 8, 30
GGML_TYPES = {t: (name, block, size) for t, (name, block, size, _) in gguf_quants.TYPES.items()}


class GGUFError(Exception):
    pass


class Tensor:
    def __init__(self, name, ne, ggml_type, offset):
        self.name, self.ne, self.type, self.offset = name, ne, ggml_type, offset

    @property
    def shape(self):
        """numpy order: slowest dimension first (reversed ne)."""
        return tuple(reversed(self.ne))

    @property
    def type_name(self):
        return GGML_TYPES.get(self.type, (f"type{self.type}",))[0]

    def nbytes(self):
        name, block, size = GGML_TYPES[self.type]
        n = int(np.prod(self.ne, dtype=np.int64))
        if self.ne[0] % block:
            raise GGUFError(f"{self.name}: row of {self.ne[0]} is not a multiple of {name}'s block {block}")
        return n // block * size


class GGUFFile:
    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            self.buf = f.read()
        self.pos = 0
        magic = self.buf[:4]
        if magic != b"GGUF":
            raise GGUFError(f"{path}: bad magic {magic!r}")
        self.pos = 4
        (self.version,) = self._unpack("<I")
        if self.version not in (2, 3):
            raise GGUFError(f"{path}: unsupported GGUF version {self.version}")
        n_tensors, n_kv = self._unpack("<QQ")
        self.kv = {}     # key -> value (arrays as lists, or numpy arrays for numbers)
        self.types = {}  # key -> value type (and element type for arrays: (ARRAY, elem))
        self.kv_bytes = {}  # key -> the key/value pair as stored, to copy into another file
        for _ in range(n_kv):
            start = self.pos
            key = self._string()
            (vtype,) = self._unpack("<I")
            value, type_desc = self._value(vtype)
            if key in self.kv:
                raise GGUFError(f"{path}: duplicate key {key}")
            self.kv[key], self.types[key] = value, type_desc
            self.kv_bytes[key] = self.buf[start:self.pos]
        self.tensors = {}
        self.tensor_order = []
        for _ in range(n_tensors):
            name = self._string()
            (n_dims,) = self._unpack("<I")
            ne = list(self._unpack(f"<{n_dims}Q"))
            ggml_type, offset = self._unpack("<IQ")
            if name in self.tensors:
                raise GGUFError(f"{path}: duplicate tensor {name}")
            self.tensors[name] = Tensor(name, ne, ggml_type, offset)
            self.tensor_order.append(name)
        self.alignment = int(self.kv.get("general.alignment", 32))
        self.header_end = self.pos
        self.data_start = (self.pos + self.alignment - 1) // self.alignment * self.alignment
        for t in self.tensors.values():
            if t.offset % self.alignment:
                raise GGUFError(f"{path}: tensor {t.name} offset {t.offset} is not aligned")
            if t.type in GGML_TYPES and self.data_start + t.offset + t.nbytes() > len(self.buf):
                raise GGUFError(f"{path}: tensor {t.name} runs past the end of the file")

    def _unpack(self, fmt):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise GGUFError(f"{self.path}: truncated at byte {self.pos}")
        values = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return values

    def _string(self):
        (n,) = self._unpack("<Q")
        if self.pos + n > len(self.buf):
            raise GGUFError(f"{self.path}: string runs past the end")
        s = self.buf[self.pos:self.pos + n].decode("utf-8")
        self.pos += n
        return s

    def _value(self, vtype):
        if vtype in SCALAR_FORMATS:
            return self._unpack(SCALAR_FORMATS[vtype])[0], vtype
        if vtype == STRING:
            return self._string(), vtype
        if vtype == ARRAY:
            etype, n = self._unpack("<IQ")
            if etype in SCALAR_DTYPES:
                dt = np.dtype(SCALAR_DTYPES[etype])
                end = self.pos + n * dt.itemsize
                if end > len(self.buf):
                    raise GGUFError(f"{self.path}: array runs past the end")
                arr = np.frombuffer(self.buf, dtype=dt, count=n, offset=self.pos).copy()
                self.pos = end
                return (arr.astype(bool) if etype == BOOL else arr), (ARRAY, etype)
            items = [self._value(etype)[0] for _ in range(n)]
            return items, (ARRAY, etype)
        raise GGUFError(f"{self.path}: unknown value type {vtype}")

    def raw(self, name):
        """The tensor's bytes, as stored."""
        t = self.tensors[name]
        start = self.data_start + t.offset
        return self.buf[start:start + t.nbytes()]

    def array(self, name):
        """The tensor as float32 numpy array in numpy order (quantized types dequantized)."""
        return self.array64(name).astype(np.float32)

    def array64(self, name):
        """The tensor as float64 numpy array in numpy order: the exact values it encodes."""
        t = self.tensors[name]
        if t.type not in GGML_TYPES:
            raise GGUFError(f"{t.name}: cannot read {t.type_name}")
        return gguf_quants.dequantize(self.raw(name), t.type).reshape(t.shape)


def describe(g):
    lines = [f"GGUF v{g.version}: {len(g.kv)} keys, {len(g.tensors)} tensors, "
             f"alignment {g.alignment}, data at {g.data_start}"]
    for key, value in g.kv.items():
        t = g.types[key]
        if isinstance(t, tuple):
            shown = value[:5] if isinstance(value, list) else value[:5].tolist()
            lines.append(f"  {key}: array[{TYPE_NAMES.get(t[1], t[1])}] x{len(value)} {shown}...")
        else:
            lines.append(f"  {key}: {TYPE_NAMES.get(t, t)} = {value!r}")
    for name in g.tensor_order:
        t = g.tensors[name]
        lines.append(f"  {name}: {t.type_name} ne={t.ne} offset={t.offset}")
    return "\n".join(lines)


if __name__ == "__main__":
    for p in sys.argv[1:]:
        print(describe(GGUFFile(p)))
