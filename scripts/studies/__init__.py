"""The lecture's studies on Fashion-MNIST, one module each; `scripts/figures.py` runs them."""
