"""Entry point of the notebook plugin.

NBRunner and NBDeployer are library API (``from flowkernel import NBRunner``), not hooks; the
entry point makes the plugin visible in ``flow plugins`` and lets it be blocked by name. It
stays light: nothing here imports IPython or the runner.
"""

from __future__ import annotations
