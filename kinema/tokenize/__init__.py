"""Tokenizers: the causal wavelet video tokenizer (continuous and FSQ-discrete) and the causal audio autoencoder.

Every model sees video and sound only through these, so their quality bounds everything downstream.
"""
