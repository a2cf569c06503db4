"""M2VSL: multi-scale multi-instance visual sound localization; the top-level API is `create_model`, `list_methods`, `from_pretrained`, `localize`, `evaluate` and `train`."""
__version__ = "0.1.0"

# This file is not exported from a notebook (nbdev only rewrites the `__version__` line above, from settings.ini).
# The API lives in `m2vsl.api` (nbs/73_api.ipynb) and `m2vsl.inference`; it is imported on first use, so that
# `import m2vsl` does not import torch, and `m2vsl.localize` / `m2vsl.create_model` do not import the training engine.
import sys as _sys, types as _types

_API = {'create_model': 'm2vsl.api', 'list_methods': 'm2vsl.api', 'localize': 'm2vsl.api', 'evaluate': 'm2vsl.evaluate',
        'train': 'm2vsl.train', 'from_pretrained': 'm2vsl.inference'}
__all__ = ['__version__', *_API]

class _CallableModule(_types.ModuleType):
    "The modules `m2vsl.train` and `m2vsl.evaluate`, callable as the API's functions of those names (`m2vsl.train(cfg)`)."
    def __call__(self, *args, **kw):
        import importlib
        return getattr(importlib.import_module('m2vsl.api'), self.__name__.rsplit('.', 1)[1])(*args, **kw)

class _Package(_types.ModuleType):
    "The package: however `m2vsl.train` / `m2vsl.evaluate` get imported, Python binds them here, and they become callable."
    def __setattr__(self, name, value):
        if name in ('train', 'evaluate') and type(value) is _types.ModuleType and value.__name__ == f'm2vsl.{name}':
            value.__class__ = _CallableModule
        super().__setattr__(name, value)

_sys.modules[__name__].__class__ = _Package

def __getattr__(name:str):
    if name not in _API: raise AttributeError(f"module 'm2vsl' has no attribute {name!r}")
    import importlib
    mod = importlib.import_module(_API[name])
    # `train`, `evaluate`: importing the module bound it here (callable); the rest are the API's functions
    return globals()[name] if name in ('train', 'evaluate') else globals().setdefault(name, getattr(mod, name))

def __dir__(): return sorted(set(globals()) | set(_API))
