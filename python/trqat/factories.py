"""User factories named in the config: "package.module:function" plus keyword arguments.

model.factory returns an nn.Module (full precision; trqat quantizes it); data.factory returns
(train_dataset, test_dataset), datasets of (image tensor, label) pairs.
"""
import importlib
from typing import Any, Callable, Dict


class FactoryError(RuntimeError):
    """A factory that cannot be imported, called, or returns the wrong thing."""


def load_factory(ref: str, what: str) -> Callable[..., Any]:
    """Import `module:function`; the error names the config key, the module and the reason."""
    module_name, sep, fn_name = ref.partition(":")
    if not sep or not module_name or not fn_name:
        raise FactoryError(f'{what}: expected "package.module:function", got {ref!r}')
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # ImportError, or anything the module raises while importing
        raise FactoryError(f"{what} = {ref!r}: cannot import module {module_name!r} "
                           f"({type(e).__name__}: {e}); the worker imports from its working directory "
                           f"and PYTHONPATH") from e
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise FactoryError(f"{what} = {ref!r}: module {module_name!r} has no function {fn_name!r}")
    return fn


def call_factory(ref: str, kwargs: Dict[str, Any], what: str) -> Any:
    fn = load_factory(ref, what)
    try:
        return fn(**kwargs)
    except Exception as e:
        raise FactoryError(f"{what} = {ref!r} failed when called with {kwargs}: {type(e).__name__}: {e}") from e
