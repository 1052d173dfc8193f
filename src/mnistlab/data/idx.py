"""Read and write IDX files, the format of MNIST and its family, from any compression.

One reader driven by the magic number (dtype code, number of dimensions); every size is
checked against the header, so a truncated, padded or mislabelled file is an error, not data.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import zlib

import numpy as np

from mnistlab.errors import IdxFormatError

# IDX type code -> big-endian dtype, as defined on the MNIST page.
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_CODES = {np.dtype(v).newbyteorder("="): k for k, v in IDX_DTYPES.items()}


def decompress(data: bytes, source: str = "data") -> bytes:
    """Return the uncompressed bytes of gzip, bzip2 or xz data (raw data passes through)."""
    try:
        if data[:2] == b"\x1f\x8b":
            return gzip.decompress(data)
        if data[:3] == b"BZh":
            return bz2.decompress(data)
        if data[:6] == b"\xfd7zXZ\x00":
            return lzma.decompress(data)
    except (EOFError, OSError, zlib.error, lzma.LZMAError, ValueError) as exc:
        raise IdxFormatError(f"{source}: truncated or damaged compressed data ({exc}); delete it and fetch it again") from None
    return data


def parse_header(data: bytes, source: str = "data") -> tuple[np.dtype, tuple[int, ...], int]:
    """Check the IDX header of uncompressed bytes; return (dtype, shape, header length)."""
    if not data:
        raise IdxFormatError(f"{source}: empty file (0 bytes); delete it and fetch it again")
    if data.lstrip()[:1] == b"<":
        raise IdxFormatError(f"{source}: is an HTML page (an error or proxy page?), not an IDX file; fetch it from another source")
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise IdxFormatError(f"{source}: not an IDX file (magic number {data[:4].hex() or 'missing'}, expected 0000 then type and rank)")
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        raise IdxFormatError(f"{source}: unknown IDX type code 0x{code:02x} in magic number {data[:4].hex()}")
    if not 1 <= ndim <= 4:
        raise IdxFormatError(f"{source}: IDX rank {ndim} in magic number {data[:4].hex()} is not 1 to 4")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IdxFormatError(f"{source}: truncated IDX header ({len(data)} bytes, expected {header})")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.dtype(IDX_DTYPES[code]), shape, header


def read_idx(data: bytes, source: str = "data") -> np.ndarray:
    """Parse IDX bytes (compressed or not) into an array in native byte order.

    >>> read_idx(write_idx(np.arange(6, dtype=np.uint8).reshape(2, 3))).shape
    (2, 3)
    """
    data = decompress(data, source)
    dtype, shape, header = parse_header(data, source)
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(data) < expected:
        raise IdxFormatError(f"{source}: truncated: header says {'x'.join(map(str, shape))} ({expected} bytes), file has {len(data)}")
    if len(data) > expected:
        raise IdxFormatError(f"{source}: {len(data) - expected} unexpected bytes after the data for shape {'x'.join(map(str, shape))}")
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array if dtype.itemsize == 1 else array.astype(dtype.newbyteorder("="))


def write_idx(array: np.ndarray) -> bytes:
    """The uncompressed IDX bytes of an array (uint8, int8, int16, int32, float32 or float64)."""
    array = np.asarray(array)
    code = _CODES.get(array.dtype.newbyteorder("="))
    if code is None:
        raise IdxFormatError(f"IDX cannot store dtype {array.dtype}")
    if not 1 <= array.ndim <= 4:
        raise IdxFormatError(f"IDX cannot store an array of rank {array.ndim}")
    header = bytes([0, 0, code, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
