"""safecritic: offline safety critics gating a KL-constrained policy, shipped as TorchScript.

Importing the package registers its gymnasium tasks (`safecritic/PointNav-v0`, ...), so
`gym.make("safecritic:safecritic/PointNav-v0")` works without a prior import. The
registration is skipped when gymnasium is absent: a robot that only runs an exported
controller (`safecritic.deploy.runtime`) needs torch and numpy, nothing else.
"""

__version__ = "0.1.0"

try:
    import gymnasium as _gymnasium  # noqa: F401
except ImportError:  # deployment-only install
    pass
else:
    from safecritic.envs.registry import register_envs as _register_envs

    _register_envs()
