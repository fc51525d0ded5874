"""A compiled kernel for the fused ℓ ≤ 1 edge products of inference: one pass over the edges
for the summed messages and one for every gradient, instead of eager PyTorch's few dozen
edge-sized operations per layer.

The kernel (``kernels/edge_products.cpp``) is built by ``torch.utils.cpp_extension`` the first
time a potential is loaded (about a minute, once per machine; the build is cached under
``TORCH_EXTENSIONS_DIR``, by default ``~/.cache/torch_extensions``). Where it cannot be built
(no C++ compiler) or ``MATDESIGN_EDGE_KERNEL=0`` is set, :class:`matdesign.fused_layers.
FusedInteraction` keeps its eager products, the same numbers more slowly; one warning says so.
It gives first derivatives only (forces, stress, Hessian-free properties): training, which
differentiates forces once more, never uses it.

Path codes and layout are those of :func:`matdesign.fused_layers.fused_messages`: sender
scalars s (N, C), component-major sender vectors v (N, 3C), ℓ = 1 edge harmonics y (E, 3),
radial weights w (E, P·C), path p's in columns p·C to (p + 1)·C.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch.autograd.function import once_differentiable
from torch.utils.checkpoint import checkpoint

from matdesign import layers

#: (ℓ_in, ℓ_out) of a fused path -> the kernel's path code
PATH_CODES = {(0, 0): 0, (0, 1): 1, (1, 1): 2, (1, 0): 3}
SOURCE = Path(__file__).parent / "kernels" / "edge_products.cpp"
ENV_SWITCH = "MATDESIGN_EDGE_KERNEL"
STALE_LOCK_S = 600.0  # a build lock older than this belongs to a build that was killed, s

_module = None
_failed = False


def _flags() -> list[str]:
    """Optimisation flags for this CPU's vector units (the extension's name carries them, so a
    cache shared between machines never hands one CPU another's build)."""
    capability = torch.backends.cpu.get_cpu_capability()
    arch = {"AVX512": ["-mavx512f", "-mavx2", "-mfma"], "AVX2": ["-mavx2", "-mfma"]}
    return ["-O3", "-fopenmp", *arch.get(capability, [])]


def kernel() -> ModuleType | None:
    """The compiled kernel, built on first use; None where it is switched off or cannot be
    built (the reason is warned once)."""
    global _module, _failed
    if _module is not None or _failed:
        return _module
    if os.environ.get(ENV_SWITCH, "1") == "0":
        _failed = True
        return None
    try:
        from torch.utils import cpp_extension

        try:  # the ninja wheel (a dependency) when the venv's bin is not on PATH
            import ninja

            os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")
        except ImportError:  # pragma: no cover - a system ninja may still be there
            pass

        flags = _flags()
        tag = torch.backends.cpu.get_cpu_capability().lower()
        name = f"matdesign_edge_products_{tag}"
        # torch waits forever on the lock of a build that was killed: an old one is stale
        lock = Path(cpp_extension._get_build_directory(name, verbose=False)) / "lock"
        if lock.exists() and time.time() - lock.stat().st_mtime > STALE_LOCK_S:
            lock.unlink(missing_ok=True)
        _module = cpp_extension.load(name=name,
                                     sources=[str(SOURCE)], extra_cflags=flags,
                                     extra_ldflags=["-fopenmp"], verbose=False)
    except Exception as exc:  # noqa: BLE001 - no compiler, headers or ninja: eager products
        _failed = True
        warnings.warn(f"matdesign: the compiled edge kernel could not be built ({exc}); "
                      "inference runs the eager PyTorch products (same numbers, slower). "
                      f"Set {ENV_SWITCH}=0 to silence this.", RuntimeWarning, stacklevel=2)
    return _module


class EdgeProducts(torch.autograd.Function):
    """Summed messages Σ_j m_ij of every fused path, one (N, width) tensor per path."""

    @staticmethod
    def forward(ctx: Any, s: torch.Tensor, v: torch.Tensor, y: torch.Tensor, w: torch.Tensor,
                receiver: torch.Tensor, sender: torch.Tensor, num_nodes: int,
                codes: tuple[int, ...], mirrored: bool) -> tuple[torch.Tensor, ...]:
        ctx.save_for_backward(s, v, y, w, receiver, sender)
        ctx.codes, ctx.mirrored = codes, mirrored
        return tuple(kernel().forward(s, v, y, w, receiver, sender, num_nodes, list(codes),
                                      mirrored))

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, *grads: torch.Tensor | None) -> tuple:
        s, v, y, w, receiver, sender = ctx.saved_tensors
        c = s.shape[1]
        full = [g if g is not None else s.new_zeros(s.shape[0], 3 * c if code in (1, 2) else c)
                for g, code in zip(grads, ctx.codes, strict=True)]
        gs, gv, gy, gw = kernel().backward(full, s, v, y, w, receiver, sender, list(ctx.codes),
                                           ctx.mirrored)
        return gs, (gv if v.numel() else None), gy, gw, None, None, None, None, None


def edge_products(s: torch.Tensor, v: torch.Tensor | None, y: torch.Tensor, w: torch.Tensor,
                  edge_index: torch.Tensor, num_nodes: int, codes: tuple[int, ...],
                  mirrored: bool = False) -> tuple[torch.Tensor, ...]:
    """:class:`EdgeProducts` on contiguous inputs (``v`` None: no vector paths); with
    ``mirrored`` edges ``w`` holds one row per pair (the first half's edges)."""
    v = s.new_zeros(0) if v is None else v.contiguous()
    return EdgeProducts.apply(s.contiguous(), v, y.contiguous(), w.contiguous(),
                              edge_index[0], edge_index[1], num_nodes, codes, mirrored)


def summed_messages(radial: Callable[[torch.Tensor], torch.Tensor], s: torch.Tensor,
                    v: torch.Tensor | None, y: torch.Tensor, edge_radial: torch.Tensor,
                    edge_index: torch.Tensor, num_nodes: int, codes: tuple[int, ...],
                    mirrored: bool = False) -> tuple[torch.Tensor, ...]:
    """Per-path message sums with the radial weights ``radial(edge_radial)`` (E, P·C) computed
    here; with ``mirrored`` edges (edge E/2 + k the reverse of edge k, so of the same length)
    on the first half only, each pair's weights serving both of its edges. Above one chunk
    of edges (the chunk of :func:`matdesign.layers.aggregate_messages`) the edges go chunk
    by chunk (pairs of edges together) under activation checkpointing, so that the radial
    network's activations of only one chunk are kept (memory at 10,000 atoms)."""
    def part(ei: torch.Tensor, y_: torch.Tensor, r_: torch.Tensor, s_: torch.Tensor,
             *v_: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return edge_products(s_, v_[0] if v_ else None, y_, radial(r_), ei, num_nodes, codes,
                             mirrored)

    m = edge_index.shape[1]
    if mirrored and m % 2:
        raise ValueError(f"mirrored edges come in pairs, got {m} edges")
    half = m // 2
    chunk = layers.edge_chunk(m, s.element_size())
    vs = () if v is None else (v,)
    if m <= chunk:
        return part(edge_index, y, edge_radial[:half] if mirrored else edge_radial, s, *vs)
    sums = None
    step = max(1, chunk // 2) if mirrored else chunk
    for start in range(0, half if mirrored else m, step):
        if mirrored:
            lo, hi = start, min(start + step, half)
            e = torch.cat([torch.arange(lo, hi), torch.arange(half + lo, half + hi)])
            args = (edge_index[:, e], y[e], edge_radial[lo:hi], s, *vs)
        else:
            e = slice(start, start + chunk)
            args = (edge_index[:, e], y[e], edge_radial[e], s, *vs)
        got = (checkpoint(part, *args, use_reentrant=False) if torch.is_grad_enabled()
               else part(*args))
        sums = got if sums is None else tuple(x + g for x, g in zip(sums, got, strict=True))
    return sums
