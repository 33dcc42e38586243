"""Entry point of `bazel run //python:statsprof -- [options] script.py [args]`."""
import os
import sys

# `bazel run` starts us inside the runfiles tree; relative paths on the
# command line mean the directory the user ran bazel from.
if os.environ.get("BUILD_WORKING_DIRECTORY"):
    os.chdir(os.environ["BUILD_WORKING_DIRECTORY"])

from statsprof.cli import main  # noqa: E402

main()
