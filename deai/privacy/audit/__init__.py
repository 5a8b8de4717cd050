"""Empirical privacy audits: how much a trained model or a party's update actually leaks.

- :mod:`deai.privacy.audit.membership`: membership inference (Yeom et al. 2018, Shokri et al. 2017);
- :mod:`deai.privacy.audit.gradient_inversion`: rebuilding inputs from one update (DLG, iDLG,
  Inverting Gradients; needs PyTorch);
- :mod:`deai.privacy.audit.report`: :func:`audit_run` on a finished run directory.

These measure what *specific* attacks achieve; only a differential-privacy guarantee bounds what
every attack can achieve. Submodules are imported on demand so the NumPy-only parts work
without PyTorch.
"""
