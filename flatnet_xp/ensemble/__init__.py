"""Ensembles: E networks of one shape in ONE ``(E, n_params)`` buffer, trained together (:class:`FlatEnsemble`)."""

from flatnet_xp.ensemble.core import FlatEnsemble

__all__ = ["FlatEnsemble"]
