"""mkdocs hooks: a bayesplug warning from a tutorial's code fails the build; each page's time.

markdown-exec runs each page's code blocks while the site is built, and fails a strict build on an
exception, but a Python warning only reaches the log. A tutorial whose fit starts warning (a
changed default, a new release of a dependency) must not go on printing figures as if all were
well: each bayesplug warning is turned into an error here, so the block fails and names it. A
block that shows a warning on purpose records it with ``warnings.catch_warnings(record=True)``.

The build runs inside CI's time budget, so the time each page took (its code blocks, mostly) is
logged: the pages to trim when the build grows are named in the log.
"""

import logging
import time
import warnings

log = logging.getLogger("mkdocs.hooks.page_time")
_started: dict[str, float] = {}


def on_config(config):
    from bayesplug.errors import ConvergenceWarning, IncompleteResultWarning, InterruptedRunWarning

    for category in (ConvergenceWarning, IncompleteResultWarning, InterruptedRunWarning):
        warnings.filterwarnings("error", category=category)
    return config


def on_page_markdown(markdown, page, config, files):
    _started[page.file.src_uri] = time.perf_counter()
    return markdown


def on_page_content(html, page, config, files):
    started = _started.pop(page.file.src_uri, None)
    if started is not None:
        log.info("%s built in %.1f s", page.file.src_uri, time.perf_counter() - started)
    return html
