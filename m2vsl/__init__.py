"""M2VSL: multi-scale multi-instance visual sound localization; the top-level API is `create_model`, `list_methods`, `from_pretrained`, `localize`, `evaluate` and `train`."""
__version__ = "0.1.0"

# This file is not exported from a notebook (nbdev only rewrites the `__version__` line above, from settings.ini).
# The API lives in `m2vsl.api` (nbs/73_api.ipynb) and `m2vsl.inference`; it is imported on first use, so that
# `import m2vsl` does not import torch.
_API = {'create_model': 'm2vsl.api', 'list_methods': 'm2vsl.api', 'localize': 'm2vsl.api', 'evaluate': 'm2vsl.api',
        'train': 'm2vsl.api', 'from_pretrained': 'm2vsl.inference'}
__all__ = ['__version__', *_API]

def __getattr__(name:str):
    if name not in _API: raise AttributeError(f"module 'm2vsl' has no attribute {name!r}")
    import importlib
    api = importlib.import_module('m2vsl.api')
    # `train`, `evaluate`: the modules of those names (imported only now), made callable as the API's functions
    if name in ('train', 'evaluate'): globals()[name] = api.callable_module(name)
    elif name not in globals(): globals()[name] = getattr(importlib.import_module(_API[name]), name)
    return globals()[name]

def __dir__(): return sorted(set(globals()) | set(_API))
