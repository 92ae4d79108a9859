"""Import learn2learn with an inert stand-in for torchvision.

torchvision from PyPI does not import beside the torch 2.13.0 CPU build in
this venv, but learn2learn imports it at module level (learn2learn.vision:
``import torchvision as tv``, ``from torchvision import transforms``,
``from torchvision.datasets import ImageFolder`` (subclassed by CIFARFS),
``from torchvision.datasets.folder import default_loader``,
``from torchvision.datasets.omniglot import Omniglot``,
``from torchvision.transforms import Compose, ToTensor, ...``).

``install_torchvision_stub()`` registers an import hook so that ``torchvision``
and every ``torchvision.<anything>`` submodule import as stub modules. Any
attribute of a stub module that is not a known submodule name is a dummy
class: it can be subclassed, and instantiated with any arguments, but
*calling* an instance (e.g. applying a transform) raises RuntimeError. Nothing
in the non-vision parts of learn2learn (algorithms, nn, optim, data, utils)
touches torchvision.

Usage:
    import sys; sys.path.insert(0, "/opt/l2l-venv")
    from l2l_stub import import_learn2learn
    l2l = import_learn2learn()
"""

import importlib
import importlib.abc
import importlib.machinery
import sys
import types

STUB_VERSION = "0.0.0+l2lstub"

# Attribute names that resolve to (stub) submodules rather than dummy classes.
_SUBMODULES = {
    "transforms", "datasets", "models", "io", "ops", "utils", "folder",
    "omniglot", "functional", "vision", "mnist", "cifar", "video", "detection",
    "segmentation", "quantization", "feature_extraction", "tv_tensors",
    "_utils", "extension", "version",
}


class _DummyMeta(type):
    """Metaclass so that Dummy.Anything also works (returns another dummy)."""

    def __getattr__(cls, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return _make_dummy(f"{cls.__qualname__}.{name}", cls.__module__)

    def __repr__(cls):
        return f"<torchvision stub class {cls.__module__}.{cls.__qualname__}>"


def _dummy_init(self, *args, **kwargs):
    self._stub_args = args
    self._stub_kwargs = kwargs


def _dummy_call(self, *args, **kwargs):
    raise RuntimeError(
        f"{type(self).__module__}.{type(self).__qualname__} is an inert "
        "torchvision stub (l2l_stub.py); real torchvision is not installed")


def _make_dummy(qualname, module):
    name = qualname.rsplit(".", 1)[-1]
    return _DummyMeta(name, (object,), {
        "__init__": _dummy_init,
        "__call__": _dummy_call,
        "__module__": module,
        "__qualname__": qualname,
        "_is_torchvision_stub": True,
    })


class _StubModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        if name in _SUBMODULES:
            value = importlib.import_module(f"{self.__name__}.{name}")
        else:
            value = _make_dummy(name, self.__name__)
        setattr(self, name, value)  # cache: same object on every access
        return value


class _StubLoader(importlib.abc.Loader):
    def create_module(self, spec):
        mod = _StubModule(spec.name)
        mod.__version__ = STUB_VERSION
        mod._is_torchvision_stub = True
        return mod

    def exec_module(self, module):
        pass


class _StubFinder(importlib.abc.MetaPathFinder):
    _loader = _StubLoader()

    def find_spec(self, fullname, path=None, target=None):
        if fullname == "torchvision" or fullname.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(
                fullname, self._loader, is_package=True)
        return None


_FINDER = _StubFinder()


def install_torchvision_stub():
    """Make ``import torchvision[.anything]`` yield stub modules.

    Does nothing if a torchvision module is already imported."""
    existing = sys.modules.get("torchvision")
    if existing is not None:
        return existing
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
    return importlib.import_module("torchvision")


def import_learn2learn():
    """Install the torchvision stub and return the imported learn2learn."""
    install_torchvision_stub()
    import learn2learn
    return learn2learn


if __name__ == "__main__":
    l2l = import_learn2learn()
    print("learn2learn", l2l.__version__, "from", l2l.__file__)
