"""Fine-tuning away from a distractor (Viviano et al. 2019): actdiff, gradmask and controls.

``losses`` (the ``audit.losses`` registry), ``masking`` (x_masked), ``layers`` (actdiff's
activations), ``normalisation`` (train mode, BatchNorm put back where it was folded),
``training`` (the loop), ``collapse`` (its signs), ``export`` (write back in the original
format), ``data`` (splits, and the validation set cut in two), ``experiment`` (every loss
against one ``none`` control, over seeds), ``uncertainty`` (bootstrap and seed intervals),
``verdict`` and ``report``.
"""
