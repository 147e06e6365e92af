"""What binds a proof to tensors, without a proof: the packing of public signals, the circuit
layouts a manifest or ``circuit.info`` declares, and the files a circuit directory names.

Hostile layouts and files are typed errors; the packing is injective for one layout. No snarkjs,
no keys: the end-to-end cases are in ``tests/test_zk_rung.py``.
"""

from __future__ import annotations

import math
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from circuits.circuit_dir import CircuitDir
from circuits.manifest import (
    PROVING_KEY,
    CircuitInfo,
    CircuitManifest,
    TensorLayout,
    file_digest,
    read_manifest,
    sign_manifest,
)
from circuits.packing import RANGES, pack_values
from circuits.r1cs import P
from receipts import codec
from receipts.digests import Digest
from receipts.errors import InputError, MalformedError
from tests.conftest import fixture_key

PUBLISHER = fixture_key("other_ed25519")
INFO = CircuitInfo(
    model=Digest(b"\1" * 32),
    circuit=Digest(b"\2" * 32),
    compiler="test/1",
    constraints=68,
    outputs=(TensorLayout(name="y", dtype="int32", shape=(1, 2)),),
    inputs=(TensorLayout(name="x", dtype="uint8", shape=(1, 4)),),
    n_public=2,
)
HUGE = [2**32 - 1] * 64  # the most a layout may declare: 64 dims below 2^32


def _info_wire(**changes: object) -> dict[str, object]:
    return {"type": "circuit-info", "version": 1, **INFO.to_wire(), **changes}


# --- layouts ----------------------------------------------------------------------------------


def test_a_layout_of_huge_dims_is_a_typed_error() -> None:
    # The signal count used a float quotient: 64 dims of 2^32 - 1 raised OverflowError.
    huge = [{"name": "y", "dtype": "int32", "shape": HUGE}]
    with pytest.raises(MalformedError, match="public signals, but the layout packs into"):
        CircuitInfo.decode(codec.encode(_info_wire(outputs=huge)))


def test_a_signed_manifest_with_huge_dims_is_a_typed_error() -> None:
    wire = codec.decode(sign_manifest(_manifest(), PUBLISHER).envelope.payload)
    wire["outputs"] = [{"name": "y", "dtype": "int32", "shape": HUGE}]
    payload = codec.encode(wire)
    with pytest.raises(MalformedError, match="layout packs into"):
        CircuitManifest.decode(payload)  # what the CLI parses before the rung checks it


def test_an_unsigned_circuit_info_with_huge_dims_is_a_typed_error(tmp_path: Path) -> None:
    huge = [{"name": "x", "dtype": "uint8", "shape": HUGE}]
    (tmp_path / "circuit.info").write_bytes(codec.encode(_info_wire(inputs=huge)))
    with pytest.raises(MalformedError, match="layout packs into"):
        CircuitDir(tmp_path).read_info()


@given(dims=st.lists(st.integers(0, 2**32 - 1), max_size=64), dtype=st.sampled_from(sorted(RANGES)))
def test_the_signal_count_is_the_exact_ceiling(dims: list[int], dtype: str) -> None:
    layout = TensorLayout(name="t", dtype=dtype, shape=tuple(dims))
    per = 248 // (RANGES[dtype][1] - RANGES[dtype][0]).bit_length()
    count = math.prod(dims)
    if count == 0:
        assert layout.signals == 0
    else:
        assert (layout.signals - 1) * per < count <= layout.signals * per


@pytest.mark.parametrize("compiler", ["c\x1b[2J", "c\n1", "c\x00", "c\x7f"])
def test_a_compiler_version_is_printable_ascii(compiler: str) -> None:
    with pytest.raises(MalformedError, match="printable ASCII"):
        CircuitInfo.decode(codec.encode(_info_wire(compiler=compiler)))


def _manifest() -> CircuitManifest:
    return CircuitManifest(
        info=INFO,
        proving_key=Digest(b"\3" * 32),
        verification_key=Digest(b"\4" * 32),
        ptau=Digest(b"\5" * 32),
    )


def test_a_manifest_round_trips_through_its_signed_bytes() -> None:
    signed = sign_manifest(_manifest(), PUBLISHER)
    assert read_manifest(signed.to_bytes(), (PUBLISHER.public_key,)) == signed


# --- files of a circuit directory -------------------------------------------------------------


def test_file_digest_refuses_a_device_in_the_circuit_dir(tmp_path: Path) -> None:
    # circuit.zkey symlinked to /dev/zero would be hashed forever; /dev/null shows the refusal.
    folder = CircuitDir(tmp_path)
    folder.zkey.symlink_to(os.devnull)
    with pytest.raises(InputError, match="not a regular file"):
        file_digest(PROVING_KEY, folder.zkey)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_file_digest_refuses_a_fifo_without_waiting_for_a_writer(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "circuit.zkey")
    with pytest.raises(InputError, match="not a regular file"):
        file_digest(PROVING_KEY, tmp_path / "circuit.zkey")


def test_file_digest_of_a_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        file_digest(PROVING_KEY, tmp_path / "absent.zkey")


# --- the packing ------------------------------------------------------------------------------


def _tensor(dtype: str, size: int) -> st.SearchStrategy[np.ndarray]:
    lo, hi = RANGES[dtype]
    return st.lists(st.integers(lo, hi), min_size=size, max_size=size).map(
        lambda v: np.array(v, dtype=dtype)
    )


@given(data=st.data(), dtype=st.sampled_from(sorted(RANGES)), size=st.integers(0, 70))
def test_two_tensors_of_one_layout_pack_alike_only_when_equal(
    data: st.DataObject, dtype: str, size: int
) -> None:
    a, b = data.draw(_tensor(dtype, size)), data.draw(_tensor(dtype, size))
    same = pack_values(a, dtype) == pack_values(b, dtype)
    assert same == bool(np.array_equal(a, b))
    assert all(0 <= s < 2**248 < P for s in pack_values(a, dtype))


def test_int8_and_uint8_of_the_same_bytes_pack_differently() -> None:
    # The shift by the type's minimum: -1 as int8 is 127, as uint8 (0xff) is 255.
    raw = np.array([0xFF, 0x00, 0x80], dtype=np.uint8)
    assert pack_values(raw, "uint8") != pack_values(raw.view(np.int8), "int8")


def test_packing_reads_values_not_bytes() -> None:
    little = np.array([1, -2, 2**31 - 1], dtype="<i4")
    assert pack_values(little.astype(">i4"), "int32") == pack_values(little, "int32")
    assert pack_values(np.asfortranarray(np.arange(6, dtype=np.uint8).reshape(2, 3)), "uint8") == [
        sum(v << (8 * i) for i, v in enumerate(range(6)))
    ]


def test_a_layout_refuses_what_it_cannot_pack() -> None:
    with pytest.raises(MalformedError, match="not a packed integer type"):
        TensorLayout(name="f", dtype="float32", shape=(1,))
    with pytest.raises(MalformedError, match="packs into"):
        replace(INFO, n_public=3)
