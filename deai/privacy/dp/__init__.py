"""Differential privacy: accounting over ``dp_accounting``, DP-FedAvg mechanisms, DP-SGD (NumPy and Opacus).

Mechanisms add noise; :mod:`deai.privacy.dp.accountant` alone turns noise into epsilon. The Opacus
trainer is not imported here, so using the rest needs no torch.
"""

from deai.privacy.dp.accountant import (
    BudgetExceededError,
    PrivacyAccountant,
    calibrate_noise_multiplier,
    compute_epsilon,
)

__all__ = ["BudgetExceededError", "PrivacyAccountant", "calibrate_noise_multiplier", "compute_epsilon"]
