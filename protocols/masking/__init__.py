"""SecAgg and SecAgg+: pairwise masking with Shamir-shared secrets (one implementation).

:mod:`~protocols.masking.config` (the round's public configuration and the hardening
switches), :mod:`~protocols.masking.messages` (one frozen dataclass per wire message, with
the nested records of :mod:`~protocols.masking.records` and the strict binary encoding of
:mod:`~protocols.masking.codec`), :mod:`~protocols.masking.client` (the client's state
machine, with what it signs in :mod:`~protocols.masking.transcripts` and what it checks of
the server's requests in :mod:`~protocols.masking.request_checks`),
:mod:`~protocols.masking.server` (with the share reconstruction of
:mod:`~protocols.masking.unmasking`), :mod:`~protocols.masking.driver` (the in-process
transport), the communication graph (:mod:`~protocols.masking.graph`) and the mask
arithmetic (:mod:`~protocols.masking.masks`). The stages are the ones every family shares
(:mod:`protocols.stages`).
"""
