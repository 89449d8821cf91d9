"""Sphinx configuration of cordmap's API reference (built from the docstrings).

Build: ``sphinx-build -W -b html docs/api OUT`` (tests/test_api.py builds it)."""

import cordmap

project = "cordmap"
release = cordmap.__version__
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon"]
napoleon_numpy_docstring = True
napoleon_google_docstring = False
autodoc_typehints = "description"
autodoc_member_order = "bysource"
html_theme = "alabaster"
exclude_patterns = ["_build"]
