"""progbench: benchmark backbone adaptation strategies on small medical-imaging prognosis tasks."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("progbench")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
