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
from protocols.flower.pki import load_identity, load_pki, round_log_path
from secagg.recipe import DPMode
from secagg.signing import IdentityKey
from threat_models.model import ThreatModel

if TYPE_CHECKING:
    import torch

    from secagg.demo import FederatedData

#: SecAgg+ against a malicious server (signed keys and survivor sets), every client adding
#: its share of discrete Gaussian noise so that the server only sees a noised sum.
POLICY = SecAggPolicy(threat_model=ThreatModel(), dp=DPMode.DISTRIBUTED, noise_multiplier=1.0, clip_norm=0.5)


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


def secure_aggregation_mod(key_dir: str | None = None) -> SecureAggregationMod:
    """The client mod with this app's policy.

    Deployed SuperNodes name their client id, identity key and PKI in ``--node-config``
    (``secagg-client-id``, ``secagg-identity``, ``secagg-pki``), which the mod reads by
    default, and keep their round log beside the identity key. ``key_dir`` instead
    serves every virtual client of a simulation from one directory written by
    :func:`protocols.flower.pki.write_identities` (client id = partition id + 1), round
    logs included.
    """
    if key_dir is None:
        return SecureAggregationMod(POLICY)
    folder = Path(key_dir)

    def client_id(context: Context) -> int:
        return int(context.node_config["partition-id"]) + 1

    def key_file(context: Context) -> Path:
        return folder / f"identity-{client_id(context)}.key"

    def identity(context: Context) -> IdentityKey:
        return load_identity(key_file(context))

    def pki(context: Context) -> dict[int, bytes]:
        return load_pki(folder / "pki.json")

    def round_log(context: Context) -> Path:
        return round_log_path(key_file(context))

    return SecureAggregationMod(POLICY, client_id=client_id, identity=identity, pki=pki, round_log=round_log)
