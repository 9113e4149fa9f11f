"""SecAgg and SecAgg+: pairwise masking with Shamir-shared secrets (one implementation).

:mod:`~protocols.masking.config` (the round's public configuration and the hardening
switches), :mod:`~protocols.masking.messages` (wire messages and codec),
:mod:`~protocols.masking.client`, :mod:`~protocols.masking.server`,
:mod:`~protocols.masking.driver` (the in-process transport), with the communication
graph (:mod:`~protocols.masking.graph`) and the mask arithmetic
(:mod:`~protocols.masking.masks`).
"""
