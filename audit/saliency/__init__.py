"""Saliency methods. Importing this package registers every built-in method in ``methods``."""

from audit.saliency import (  # noqa: F401  (imported to register)
    attention_rollout,
    competitive_gxi,
    grad_cam,
    gradient,
    guided_backprop,
    guided_grad_cam,
    input_x_gradient,
    integrated_gradients,
    occlusion,
    smoothgrad,
    smoothgrad_ig,
    wildcat,
)
from audit.saliency.base import SaliencyMethod, methods

__all__ = ["SaliencyMethod", "methods"]
from audit.counterfactual import method as _latentshift  # noqa: E402,F401  (registers latentshift-*)
