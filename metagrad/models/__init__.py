"""Models: ordinary ``nn.Module``s, run functionally by the inner loop."""
from .mlp import MLP
from .tnet import TConv2d, TLinear, to_tnet
from .bias_transform import BiasTransform, bias_transformed_mlp
from .linear import LinearModel

__all__ = ["MLP"]
__all__ += ["TLinear", "TConv2d", "to_tnet", "BiasTransform", "bias_transformed_mlp", "LinearModel"]
from .conv4 import Conv4

__all__ += ["Conv4"]
from .snail import SNAIL

__all__ += ["SNAIL"]
