"""Data: robust image decoding, PaddleClas-exact preprocessing, datasets."""
