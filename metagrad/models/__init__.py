"""Models: ordinary ``nn.Module``s, run functionally by the inner loop."""
from .mlp import MLP

__all__ = ["MLP"]
