"""Build of the optional C speedups (``botframe._bookext``); all other metadata is in pyproject.toml.

The extension is optional: where no C compiler is at hand the install still succeeds and botframe runs
its pure-Python book (``botframe.book.EXTENSION`` is then None). ``BOTFRAME_NO_EXTENSIONS=1`` at build
time skips it; at run time it makes botframe ignore a built one.
"""

import os

from setuptools import Extension, setup

ext_modules = []
if not os.environ.get("BOTFRAME_NO_EXTENSIONS"):
    ext_modules.append(Extension("botframe._bookext", ["botframe/_bookext.c"], optional=True))

setup(ext_modules=ext_modules)
