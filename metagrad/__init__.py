"""metagrad: gradient-based meta-learning on PyTorch, vectorised over tasks with torch.func."""
from . import learners, models, tasks
from .algorithm import MAML
from .batch import TaskBatch
from .exact import exact_call, exact_mode
from .inner import adapt
from .learners import SGD, Learner, chain, clip, masked
from .learners import MetaSGD, MTNet, TNet
from .learners import LSTMMetaLearner, Turtle
from . import baselines
from .metagrads import MODES, HessianFree
from .params import Params
from .population import Population
from .schedules import constant_schedule, cosine_schedule
from .training import FitResult, fit
from .tensorboard_log import TensorBoardLog
from .streams import Draw, PopulationStream, SampledStream, TaskStream
from .evaluation import adaptation_curves, evaluate
from .device import resolve_device
from .distributed import World
from .errors import MetagradError
from .experiments.loading import TrainedRun, load_run   # last: the experiments build on all of the above

__version__ = "0.1.0"

__all__ = ["MAML", "TaskBatch", "adapt", "Learner", "SGD", "chain", "clip", "masked", "MODES", "HessianFree",
           "Params", "learners", "models", "tasks", "__version__"]
__all__ += ["MetaSGD", "TNet", "MTNet"]
__all__ += ["Turtle", "LSTMMetaLearner", "baselines"]
__all__ += ["Population"]
__all__ += ["exact_call", "exact_mode"]
__all__ += ["fit", "FitResult", "constant_schedule", "cosine_schedule", "Draw", "TaskStream", "SampledStream",
            "PopulationStream", "adaptation_curves", "evaluate", "resolve_device", "World", "MetagradError"]
__all__ += ["TensorBoardLog", "load_run", "TrainedRun"]
