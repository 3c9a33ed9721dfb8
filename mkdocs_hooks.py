"""mkdocs hook: a bayesplug warning from a tutorial's code fails the build.

markdown-exec runs each page's code blocks while the site is built, and fails a strict build on an
exception, but a Python warning only reaches the log. A tutorial whose fit starts warning (a
changed default, a new release of a dependency) must not go on printing figures as if all were
well: each bayesplug warning is turned into an error here, so the block fails and names it. A
block that shows a warning on purpose records it with ``warnings.catch_warnings(record=True)``.
"""

import warnings


def on_config(config):
    from bayesplug.errors import ConvergenceWarning, IncompleteResultWarning, InterruptedRunWarning

    for category in (ConvergenceWarning, IncompleteResultWarning, InterruptedRunWarning):
        warnings.filterwarnings("error", category=category)
    return config
