"""Optional dependencies, named by the extra that installs them (python/pyproject.toml)."""
from types import ModuleType


class MissingExtra(ImportError):
    """An optional dependency that is not installed; the message names the pip extra."""


def torchvision(needed_by: str) -> ModuleType:
    """`import torchvision`, or MissingExtra saying what needs it and how to install it."""
    try:
        import torchvision as tv
    except ImportError as e:
        raise MissingExtra(f"{needed_by} needs torchvision, which is not installed: pip install 'trqat[vision]' "
                           f"(or the torchvision build that matches your torch; conda: environment.yml has it)") from e
    return tv
