"""The primitives: small, parameterised, known-answer tested; nothing above them imported.

:mod:`~secagg.primitives.encoding` (fixed-point vectors in ``Z_(2^b)``),
:mod:`~secagg.primitives.prg` (AES-CTR / ChaCha20 masks), :mod:`~secagg.primitives.keys`
(X25519 + HKDF), :mod:`~secagg.primitives.aead` (AES-GCM share cipher),
:mod:`~secagg.primitives.signing` (Ed25519), :mod:`~secagg.primitives.shamir`,
:mod:`~secagg.primitives.transcript` (injective encodings of what is signed),
:mod:`~secagg.primitives.paillier`, :mod:`~secagg.primitives.threshold_paillier`,
:mod:`~secagg.primitives.distributed_paillier`, and the seeded streams of reproducible
simulations (:mod:`~secagg.primitives.simulation`, never for a private run).
"""
