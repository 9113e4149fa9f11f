"""The privacy accountants, one module per concept; :mod:`dp.accounting` gathers them.

* :mod:`dp.accountants.base` -- what every accountant shares: :class:`AccountantKind`,
  :class:`AccountantLimitError`, the memory bound, and the validation of events;
* :mod:`dp.accountants.pld`, :mod:`dp.accountants.rdp`, :mod:`dp.accountants.prv` -- the
  three back ends (privacy loss distributions, Renyi DP, privacy random variables);
* :mod:`dp.accountants.factory` -- :func:`make_accountant` and the one-call conversions
  :func:`compute_epsilon` and :func:`compute_delta`;
* :mod:`dp.accountants.gaussian` -- the exact epsilon and delta of mu-GDP;
* :mod:`dp.accountants.distributed_pld` -- the distributed discrete Gaussian accounted
  through the Gaussian PLD with a proven closeness correction.

Nothing is imported here: ``import dp.accountants.rdp`` loads that back end only.
"""
