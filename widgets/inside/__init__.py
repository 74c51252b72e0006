"""Panels that look inside a network while it learns: gates, cell state, gradients through time,
gate health, convolution filters and feature maps, text generation."""
