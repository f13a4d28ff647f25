"""Trainable saliency (Aggarwal et al. 2020): a classifier cut at its last spatial feature map
with a WILDCAT head (Durand et al. 2017) that outputs class maps with the logits.

``head`` (the head and its pooling), ``network`` (the cut and ``build_wildcat``), ``training``
(BCE, Adam, early stopping on the validation loss), ``export`` (the model written in the input's
format with two outputs).
"""
