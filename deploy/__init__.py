"""Deployment: TorchScript export, the torch+numpy runtime, evaluation, certification, release.

Importing this package imports nothing else: `safecritic.deploy.runtime` must load on a
robot that has only torch and numpy.
"""
