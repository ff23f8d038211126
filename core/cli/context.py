"""The kernel of this ``flow`` process, shared by the root command and every subcommand."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowkernel.storage.backend import use_kernel

if TYPE_CHECKING:
    from flowkernel.kernel import Kernel

_KERNEL: Kernel | None = None


def get_kernel() -> Kernel:
    """The kernel of this ``flow`` process (built once, on first use)."""
    global _KERNEL
    if _KERNEL is None:
        from flowkernel.kernel import Kernel

        _KERNEL = Kernel.discover()
        use_kernel(_KERNEL)
    return _KERNEL


def set_kernel(kernel: Kernel | None) -> None:
    """Use ``kernel`` for the next commands of this process (tests, embedding)."""
    global _KERNEL
    _KERNEL = kernel
    use_kernel(kernel)
