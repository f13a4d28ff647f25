"""Fine-tuning away from a distractor (Viviano et al. 2019): actdiff, gradmask and controls.

``losses`` (the ``audit.losses`` registry), ``masking`` (x_masked), ``layers`` (actdiff's
activations), ``training`` (the loop), ``export`` (write back in the original format),
``experiment`` (loss vs the ``none`` control, over seeds), ``verdict`` and ``report``.
"""
