"""The recipe: secure aggregation with differential privacy around an existing FL loop.

One :class:`SecureAggregator` per training run, one call per round. It takes each
client's update -- a torch state-dict delta, a dict or list of numpy arrays, or a single
array -- and returns the mean (or sum) in the same structure, having

1. clipped every update to L2 norm ``C`` (the DP sensitivity),
2. applied the configured differential privacy,
3. run the chosen secure aggregation protocol (``secagg+`` by default, ``secagg``,
   ``paillier``) through the in-process driver :func:`protocols.simulate.simulate`, so the
   server
   side only ever handles masked vectors or ciphertexts, and
4. recorded the round in a :class:`dp.ledger.PrivacyLedger` (refusing, before anything
   leaves a client, a round that would exceed the privacy budget).

The user picks a threat model and a privacy target; every cryptographic parameter (ring
size, neighbourhood size ``k``, Shamir threshold ``t``, Paillier key size, noise shares)
is derived from them.

Differential privacy (:class:`DPMode`), user-level as in DP-FedAvg (McMahan et al.,
ICLR 2018), with noise multiplier ``z`` and clip norm ``C``:

``distributed`` (default)
    Every client adds its share of discrete Gaussian noise to its quantised update before
    masking (Kairouz, Liu, Steinke, ICML 2021), so no one -- not even the server -- ever
    sees an un-noised sum. Shares are sized so that the survivors' noise still reaches
    ``z C`` when up to the threat model's dropout fraction is missing and when its
    colluding fraction of clients removes its own noise.
``central``
    The (trusted) aggregator adds ``N(0, (z C)^2)`` to the unmasked sum; it sees the exact
    sum of clipped updates.
``local``
    The clients already privatised their training (e.g. Opacus DP-SGD,
    :mod:`dp.opacus_client`); the recipe aggregates securely and records their sample-level
    accounting. Every client of a round must come with its DP-SGD record (a round with a
    client without one is refused: nothing is aggregated). User-level epsilon is then
    infinite and reported as such.
``none``
    Secure aggregation only. Updates are still range-checked before quantisation.

Which epsilon, against whom. In every protocol here the server learns the cohort (it
receives the cohort's messages), and under any :class:`~threat_models.model.ServerClass`
it may also choose it. Amplification by sampling does not hold against such an adversary,
so the headline :attr:`SecureAggregator.epsilon` is the *per-client* figure: for each
client, the composition of the mechanisms of the rounds it actually took part in, without
amplification; the worst client is reported. The amplified, population-level figure
(:attr:`SecureAggregator.amplified_epsilon`) counts amplification only for rounds whose
cohort the library's own sampler drew (:meth:`SecureAggregator.sample_cohort`, exact
Poisson sampling from the OS CSPRNG) and holds only against an adversary who neither
chooses nor learns which clients were sampled (:data:`AMPLIFICATION_ASSUMPTION`). A
cohort the recipe did not sample is accounted as full participation of its clients.

Means: with DP the noised sum is divided by the *expected* cohort size (a public
constant, as DP-FedAvg prescribes; dividing by the actual count would leak it through
the sensitivity). Without DP the denominator is the number of survivors, or the sum of
their weights for a weighted mean -- the weights are folded into the masked vector, so the
server learns only their sum.

Layout. The recipe is the top layer of the library, one module per concept:
:mod:`~secagg.recipe.options` (the choices and the recipe's errors),
:mod:`~secagg.recipe.privacy` (what the epsilons mean, the sampler, the calibration),
:mod:`~secagg.recipe.planning` (the round planning the Flower adapter shares),
:mod:`~secagg.recipe.noise` (the noise of a run), :mod:`~secagg.recipe.updates` (updates
to rows and back), :mod:`~secagg.recipe.accounting` (the ledger records),
:mod:`~secagg.recipe.execution` (the protocol call), :mod:`~secagg.recipe.encoders`
(verification and seeded simulation), :mod:`~secagg.recipe.report` and
:mod:`~secagg.recipe.aggregator` (:class:`SecureAggregator`). This package re-exports
the public names.

Example::

    aggregator = SecureAggregator(population=100, clients_per_round=50,
                                  rounds=30, target_epsilon=8.0)
    for rnd in range(30):
        cohort = aggregator.sample_cohort(range(100))
        deltas = {c: local_train(c, model) for c in cohort}
        apply(model, aggregator.mean(deltas))
    print(aggregator.epsilon)            # worst client, holds against the server
    print(aggregator.amplified_epsilon)  # only if the server neither chose nor saw cohorts
"""

from __future__ import annotations

from secagg.primitives.simulation import UnsafeSimulationWarning
from secagg.recipe.aggregator import SecureAggregator
from secagg.recipe.options import (
    AggregationProtocol,
    ClientNotInPopulationError,
    CohortTooSmallError,
    DPMode,
    MissingLocalDpError,
    NoisyAggregateWarning,
    VerifyMode,
)
from secagg.recipe.planning import distributed_encoder as distributed_encoder
from secagg.recipe.planning import distributed_ring_bits as distributed_ring_bits
from secagg.recipe.planning import dp_minimum_threat_model as dp_minimum_threat_model
from secagg.recipe.planning import fixed_point_encoder as fixed_point_encoder
from secagg.recipe.planning import fixed_point_ring_bits as fixed_point_ring_bits
from secagg.recipe.privacy import (
    AMPLIFICATION_ASSUMPTION,
    PrivacyStatement,
    calibrate_noise_multiplier,
    poisson_sample,
)
from secagg.recipe.privacy import PER_CLIENT_ASSUMPTION as PER_CLIENT_ASSUMPTION
from secagg.recipe.report import RoundReport

__all__ = [
    "AMPLIFICATION_ASSUMPTION",
    "AggregationProtocol",
    "ClientNotInPopulationError",
    "CohortTooSmallError",
    "DPMode",
    "MissingLocalDpError",
    "NoisyAggregateWarning",
    "PrivacyStatement",
    "RoundReport",
    "SecureAggregator",
    "UnsafeSimulationWarning",
    "VerifyMode",
    "calibrate_noise_multiplier",
    "poisson_sample",
]
