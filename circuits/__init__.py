"""Zero-knowledge proofs of integer ONNX inference (the zk rung): constraint systems over
BN254's scalar field in the iden3 ``.r1cs``/``.wtns`` formats that snarkjs reads.

    from circuits.r1cs import R1CS, check_witness
"""
