"""A Flower app: FedAvg on scikit-learn's digits with SecAgg+ and distributed DP.

The policy below is the single source of truth that the ServerApp and every ClientApp
hold; the clients refuse any round announced under a different one.

A deployed SuperNode starts a fresh ClientApp process for every message, and only the
masked-input stage trains: torch and the data are imported inside the functions that need
them, so the other protocol stages start quickly.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from flwr.app import Context

from protocols.flower import SecAggPolicy, SecureAggregationMod
from protocols.flower.pki import (
    load_identity,
    load_pki,
    node_client_id,
    node_identity,
    node_pki,
    node_round_log,
    round_log_path,
)
from protocols.round_log import RoundLog
from secagg.errors import InvalidParameterError
from secagg.primitives.signing import IdentityKey
from secagg.recipe import DPMode
from threat_models.model import ThreatModel

if TYPE_CHECKING:
    import torch

    from secagg.demo import FederatedData

#: SecAgg+ against a malicious server (signed keys and survivor sets), every client adding
#: its share of discrete Gaussian noise so that the server only sees a noised sum.
POLICY = SecAggPolicy(
    threat_model=ThreatModel(), dp=DPMode.DISTRIBUTED, noise_multiplier=1.0, clip_norm=0.5
)


def make_model() -> torch.nn.Module:
    """Softmax regression on the 64 pixels of a digit."""
    import torch

    torch.manual_seed(0)
    return torch.nn.Linear(64, 10)


def partition(context: Context) -> tuple[FederatedData, int]:
    """This node's share of the non-IID digits split (deterministic in the partition id)."""
    from secagg.demo import load_federated

    num = int(context.node_config["num-partitions"])
    return load_federated(num, alpha=0.5, seed=0), int(context.node_config["partition-id"])


def key_dir(context: Context) -> Path | None:
    """The directory of identity keys serving every virtual client, if this node uses one.

    A deployed SuperNode names its own key in its node config (``secagg-identity``); a
    virtual SuperNode of a simulation has only a partition id, and the keys of all of them
    are in the run config's ``key-dir``.
    """
    if "secagg-identity" in context.node_config:
        return None
    folder = str(context.run_config.get("key-dir", ""))
    return Path(folder) if folder else None


def secure_aggregation_mod() -> SecureAggregationMod:
    """The client mod with this app's policy.

    Deployed SuperNodes name their client id, identity key and PKI in ``--node-config``
    (``secagg-client-id``, ``secagg-identity``, ``secagg-pki``), which the mod reads by
    default, and keep their round log beside the identity key. In a simulation, every
    virtual client is served from the run config's ``key-dir``, written by
    :func:`protocols.flower.pki.write_identities` (client id = partition id + 1), round
    logs included.
    """

    def client_id(context: Context) -> int:
        if key_dir(context) is None:
            return node_client_id(context.node_config)
        return int(context.node_config["partition-id"]) + 1

    def key_file(context: Context) -> Path:
        folder = key_dir(context)
        if folder is None:
            raise InvalidParameterError(
                "no key-dir in the run config and no secagg-identity in the node config"
            )
        return folder / f"identity-{client_id(context)}.key"

    def identity(context: Context) -> IdentityKey:
        if key_dir(context) is None:
            return node_identity(context.node_config)
        return load_identity(key_file(context))

    def pki(context: Context) -> dict[int, bytes]:
        folder = key_dir(context)
        return node_pki(context.node_config) if folder is None else load_pki(folder / "pki.json")

    def round_log(context: Context) -> RoundLog | Path | None:
        if key_dir(context) is None:
            return node_round_log(context.node_config)
        return round_log_path(key_file(context))

    return SecureAggregationMod(
        POLICY, client_id=client_id, identity=identity, pki=pki, round_log=round_log
    )
