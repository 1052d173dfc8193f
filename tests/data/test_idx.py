import bz2
import gzip
import lzma

import numpy as np
import pytest

from mnistlab.data.idx import read_idx, write_idx
from mnistlab.errors import IdxFormatError


@pytest.mark.parametrize("array", [
    np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28),
    np.arange(5, dtype=np.uint8),
    np.arange(24, dtype=np.int32).reshape(3, 8) - 7,  # QMNIST's label matrix
    np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3),
    np.arange(4, dtype=np.int16),
])
@pytest.mark.parametrize("compress", [lambda b: b, gzip.compress, bz2.compress, lzma.compress])
def test_round_trip_any_dtype_and_compressor(array, compress):
    back = read_idx(compress(write_idx(array)))
    assert back.dtype == array.dtype.newbyteorder("=")
    np.testing.assert_array_equal(back, array)


def test_header_is_the_published_one():
    data = write_idx(np.zeros((60000, 28, 28), dtype=np.uint8))
    assert data[:16] == bytes.fromhex("00000803" "0000ea60" "0000001c" "0000001c")
    labels = write_idx(np.zeros(10000, dtype=np.uint8))
    assert labels[:8] == bytes.fromhex("00000801" "00002710")


def test_int32_is_big_endian_on_disk():
    data = write_idx(np.array([[1, 2]], dtype=np.int32))
    assert data[:4] == bytes.fromhex("00000c02") and data[-8:] == bytes.fromhex("0000000100000002")


@pytest.mark.parametrize("data, words", [
    (b"", "empty file"),
    (b"\x08\x03\x00\x00" + b"\x00" * 12, "not an IDX file"),
    (b"\x00\x00\x07\x01\x00\x00\x00\x01\x00", "unknown IDX type code"),
    (b"\x00\x00\x08\x09" + b"\x00" * 40, "rank 9"),
    (b"\x00\x00\x08\x03\x00\x00", "truncated IDX header"),
    (bytes.fromhex("00000803" "00000002" "0000001c" "0000001c") + b"\x00" * 100, "truncated"),
    (bytes.fromhex("00000801" "00000002") + b"\x00\x01\x02", "unexpected bytes"),
    (b"<!DOCTYPE html><html><body>Access denied</body></html>", "HTML page"),
    (gzip.compress(b"<html><head><title>503</title></head></html>"), "HTML page"),
    (gzip.compress(write_idx(np.zeros((3, 28, 28), np.uint8)))[:-20], "truncated or damaged compressed data"),
    (b"\x1f\x8b" + b"garbage" * 10, "truncated or damaged compressed data"),
])
def test_bad_files_are_named_errors(data, words):
    with pytest.raises(IdxFormatError, match=words) as info:
        read_idx(data, "some-file.gz")
    assert str(info.value).startswith("some-file.gz: ") and "\n" not in str(info.value)


def test_write_refuses_what_idx_cannot_hold():
    with pytest.raises(IdxFormatError, match="dtype"):
        write_idx(np.zeros(3, dtype=np.int64))
    with pytest.raises(IdxFormatError, match="rank"):
        write_idx(np.zeros((1,) * 5, dtype=np.uint8))
