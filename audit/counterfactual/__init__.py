"""Latent Shift counterfactuals (Cohen et al. 2021, "Gifsplanation via Latent Shift"): an
autoencoder, the λ search, frames, 2-D maps and GIFs. See ``explain.explain_batch``."""
