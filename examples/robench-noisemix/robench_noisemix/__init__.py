"""robench-noisemix: a worked example of a robench plugin package.

It adds the ``noisemix`` augmentation and the ``noise_error`` metric through the entry points in
its ``pyproject.toml``; robench finds them by name once the package is installed.
"""

from robench_noisemix.augment import NoiseMix
from robench_noisemix.metric import noise_error

__all__ = ["NoiseMix", "noise_error"]
