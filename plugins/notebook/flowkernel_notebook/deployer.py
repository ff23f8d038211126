"""NBDeployer: deploy a flow class defined in a notebook with any installed deployer."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from flowkernel_notebook.flowfile import NotebookFlow

if TYPE_CHECKING:
    from collections.abc import Callable

    from flowkernel.deployer import DeployedFlow, Deployer, DeployerImpl


class NBDeployer(NotebookFlow):
    """``NBDeployer(MyFlow).argo_workflows(name="x").create()``: :class:`Deployer` for a flow
    class defined in any cell of this notebook.

    The flow file is built from the notebook as for :class:`NBRunner` (same checks, same
    errors, before anything starts). Every installed deployer is a method, as on
    :class:`Deployer`; other attributes are the wrapped Deployer's.

    :param flow_cls: a FlowSpec subclass, defined in a notebook cell or in a module.
    :param show_output: show the deployer commands' output.
    :param env: variables added to the deployer commands' environment.
    :param base_dir: where the flow file is written (default: the working directory).
    :param file_read_timeout: seconds to wait for a deployer command's result.
    :param top_level: ``flow`` root options, as for :class:`Deployer` (``datastore_root``).
    """

    def __init__(
        self,
        flow_cls: type,
        show_output: bool = True,
        env: dict[str, str] | None = None,
        base_dir: str | None = None,
        file_read_timeout: float = 3600,
        **top_level: Any,
    ):
        from flowkernel.deployer import Deployer

        super().__init__(flow_cls, env, base_dir)
        self.deployer: Deployer = Deployer(
            self.flow_file.path,
            show_output=show_output,
            env=env,
            file_read_timeout=file_read_timeout,
            **top_level,
        )

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name in ("deployer", "flow_file", "flow_cls", "env"):
            raise AttributeError(name)
        attr = getattr(self.deployer, name)
        if not callable(attr):
            return attr

        def make(**kwargs: Any) -> DeployerImpl:
            self.flow_file.ensure()
            return self._for_notebook(attr(**kwargs))

        make.__name__, make.__doc__ = name, attr.__doc__
        return make

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *dir(self.deployer)})

    def cleanup(self) -> None:
        """Remove the flow file written from the notebook (deployments keep their own copy)."""
        self.flow_file.remove()

    def __enter__(self) -> NBDeployer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    # -- machinery -----------------------------------------------------------------------------

    def _for_notebook(self, impl: DeployerImpl) -> DeployerImpl:
        """``impl`` with the notebook's environment, and a ``create`` that keeps it so."""
        impl.env = self.env
        create: Callable[..., DeployedFlow] = impl.create

        def create_from_notebook(**kwargs: Any) -> DeployedFlow:
            from flowkernel.flow.loader import preload

            self.flow_file.ensure()
            deployed = create(**kwargs)
            deployed.deployer.env = self.env
            if deployed.flow_file and os.path.isfile(deployed.flow_file):
                # trigger() checks parameters against the deployed copy: use the class this
                # process already has, rather than importing the copy into the kernel
                preload(self.flow_cls, deployed.flow_file)
            return deployed

        create_from_notebook.__doc__ = create.__doc__
        impl.create = create_from_notebook  # type: ignore[method-assign]
        return impl
