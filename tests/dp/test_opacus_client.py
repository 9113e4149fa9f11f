"""Opacus DP-SGD in federated clients: accounting across rounds, plain models, budgets."""

from __future__ import annotations

import json

import dp_accounting
import pytest
import torch
from opacus.accountants import RDPAccountant
from torch.utils.data import DataLoader, TensorDataset

from dp.opacus_client import (
    OpacusAccountantKind,
    OpacusClientState,
    train_private_round,
)
from secagg.errors import BudgetExceededError, InvalidParameterError

DELTA = 1e-5


def _data(n: int = 96, batch_size: int = 16, seed: int = 0) -> DataLoader[tuple[torch.Tensor, ...]]:
    g = torch.Generator().manual_seed(seed)  # simulation data
    x = torch.randn(n, 6, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    return DataLoader(TensorDataset(x, y), batch_size=batch_size)


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)  # model initialisation only
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))


def _accuracy(model: torch.nn.Module, loader: DataLoader[tuple[torch.Tensor, ...]]) -> float:
    x, y = loader.dataset.tensors  # type: ignore[attr-defined]
    with torch.no_grad():
        return float((model(x).argmax(dim=1) == y).float().mean())


def test_rounds_compose_to_one_accountant_over_all_steps() -> None:
    model, loader = _model(), _data()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    state = None
    total_steps = 0
    events = []
    for _ in range(3):
        result = train_private_round(
            model, optimizer, loader, noise_multiplier=1.2, max_grad_norm=1.0, state=state
        )
        state = result.client_state
        total_steps += result.steps
        events.append(result.event)
        model.load_state_dict(result.state_dict)
    assert state is not None and total_steps == 18 and state.steps == 18
    # one Opacus accountant stepped over every step of every round
    reference = RDPAccountant()
    for _ in range(total_steps):
        reference.step(noise_multiplier=1.2, sample_rate=1 / 6)
    assert state.epsilon(DELTA) == pytest.approx(reference.get_epsilon(delta=DELTA), rel=1e-12)
    # and dp-accounting, composing the per-round events, agrees up to its own orders grid
    rdp = dp_accounting.rdp.RdpAccountant()
    rdp.compose(dp_accounting.ComposedDpEvent(events))
    assert state.epsilon(DELTA) == pytest.approx(rdp.get_epsilon(DELTA), rel=0.03)
    # re-creating the engine each round (fresh state) under-counts: what this helper avoids
    fresh = train_private_round(model, optimizer, loader, noise_multiplier=1.2, max_grad_norm=1.0)
    assert fresh.client_state.epsilon(DELTA) < state.epsilon(DELTA) / 1.3


def test_plain_model_in_plain_state_out_and_no_hooks_left() -> None:
    model, loader = _model(), _data()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    first = train_private_round(model, optimizer, loader, noise_multiplier=1.0, max_grad_norm=1.0)
    # the same model again: no "Trying to add hooks twice to the same model"
    second = train_private_round(
        model, optimizer, loader, noise_multiplier=1.0, max_grad_norm=1.0, state=first.client_state
    )
    assert all(torch.equal(model.state_dict()[k], before[k]) for k in before)
    assert not model._forward_hooks and not any(m._forward_hooks for m in model.modules())
    assert not any(hasattr(p, "grad_sample") for p in model.parameters())
    for result in (first, second):
        assert list(result.state_dict) == list(before)
        assert set(result.update) == set(before)
        for k in before:
            assert torch.allclose(result.update[k], result.state_dict[k] - before[k])
        assert any(float(v.abs().sum()) > 0 for v in result.update.values())
    assert second.client_state.steps == first.steps + second.steps
    # the trained model is a plain module state: it loads into a fresh copy
    fresh = _model(1)
    fresh.load_state_dict(second.state_dict)


def test_training_learns_and_reports_events() -> None:
    model, loader = _model(), _data(n=256, batch_size=32)
    start = _accuracy(model, loader)
    state = None
    for _ in range(4):
        result = train_private_round(
            model,
            lambda params: torch.optim.SGD(params, lr=1.0),
            loader,
            noise_multiplier=0.6,
            max_grad_norm=1.0,
            state=state,
            epochs=2,
        )
        state = result.client_state
        model.load_state_dict(result.state_dict)
        assert result.num_examples == 256 and result.sample_rate == pytest.approx(1 / 8)
        assert isinstance(result.event, dp_accounting.SelfComposedDpEvent)
        assert result.event.count == 16
        inner = result.event.event
        assert isinstance(inner, dp_accounting.PoissonSampledDpEvent)
        assert inner.sampling_probability == pytest.approx(1 / 8)
        assert inner.event == dp_accounting.GaussianDpEvent(0.6)
    assert _accuracy(model, loader) > max(0.8, start)


@pytest.mark.parametrize("kind", [OpacusAccountantKind.PRV, OpacusAccountantKind.RDP])
def test_accountants_persist(kind: OpacusAccountantKind) -> None:
    model, loader = _model(), _data()
    r1 = train_private_round(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        loader,
        noise_multiplier=1.5,
        max_grad_norm=1.0,
        accountant=kind,
        max_steps=4,
    )
    r2 = train_private_round(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        loader,
        noise_multiplier=1.5,
        max_grad_norm=1.0,
        state=r1.client_state,
        max_steps=4,
    )
    assert r1.steps == 4 and r2.client_state.accountant is kind and r2.client_state.steps == 8
    assert 0 < r1.client_state.epsilon(DELTA) < r2.client_state.epsilon(DELTA)


def test_state_serialises() -> None:
    state = OpacusClientState(history=((1.1, 0.25, 10), (0.9, 0.25, 3)))
    again = OpacusClientState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert again == state
    assert again.epsilon(DELTA) == pytest.approx(state.epsilon(DELTA))
    assert OpacusClientState().epsilon(DELTA) == 0.0
    with pytest.raises(InvalidParameterError):
        OpacusClientState.from_dict({"version": 99})
    with pytest.raises(InvalidParameterError):
        OpacusClientState(history=((1.0, 1.5, 3),))
    with pytest.raises(InvalidParameterError):
        OpacusClientState(accountant="gdp")  # type: ignore[arg-type]  # may under-estimate


def test_budget_is_enforced_before_training() -> None:
    model, loader = _model(), _data()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = OpacusClientState(history=((1.0, 1 / 6, 60),))
    with pytest.raises(BudgetExceededError):
        train_private_round(
            model,
            torch.optim.SGD(model.parameters(), lr=0.1),
            loader,
            noise_multiplier=1.0,
            max_grad_norm=1.0,
            state=state,
            budget=(state.epsilon(DELTA) + 0.01, DELTA),
        )
    assert all(torch.equal(model.state_dict()[k], before[k]) for k in before)
    ok = train_private_round(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        loader,
        noise_multiplier=1.0,
        max_grad_norm=1.0,
        state=state,
        budget=(50.0, DELTA),
    )
    assert ok.client_state.steps == 66


def test_rejects_what_opacus_cannot_privatise() -> None:
    loader = _data()
    bn = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    with pytest.raises(InvalidParameterError, match="ModuleValidator.fix"):
        train_private_round(
            bn,
            torch.optim.SGD(bn.parameters(), lr=0.1),
            loader,
            noise_multiplier=1.0,
            max_grad_norm=1.0,
        )
    model = _model()
    other = _model(2)
    with pytest.raises(InvalidParameterError):
        train_private_round(
            model,
            torch.optim.SGD(other.parameters(), lr=0.1),
            loader,
            noise_multiplier=1.0,
            max_grad_norm=1.0,
        )
    with pytest.raises(InvalidParameterError):
        train_private_round(
            model,
            torch.optim.SGD(model.parameters(), lr=0.1),
            loader,
            noise_multiplier=0.0,
            max_grad_norm=1.0,
        )
    with pytest.raises(InvalidParameterError):
        train_private_round(
            model,
            torch.optim.SGD(model.parameters(), lr=0.1),
            loader,
            noise_multiplier=1.0,
            max_grad_norm=1.0,
            epochs=0,
        )
