"""A potential spec, parsed once: which potential a string names, its calculator, its elements.

The spec forms, everywhere a potential is named (CLI ``--potential``, campaign YAML,
``load_calculator``, screening settings):

* ``"default"``: the shipped NbMoTaW checkpoint, :data:`DEFAULT_MODEL`;
* a checkpoint path: one model, a multi-head committee or an ensemble of members (all three
  are one file written by :func:`matdesign.checkpoint.save_potential`);
* ``"emt"``: ASE's EMT;
* ``"module:callable"``: a factory returning any ASE calculator. Resolving it IMPORTS
  ``module`` (running its top-level code); building the calculator calls the factory.

A string containing ``":"`` that names an existing file is a checkpoint, not a factory.
Parsing never fails for a string, so every spec has a kind and an identity
(``search/hashing.py::potential_id``); loading is where a spec is refused. This module
imports torch only when a checkpoint is loaded, so EMT screens never import the model stack.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch

#: the shipped NbMoTaW checkpoint, named by the spec ``"default"``
DEFAULT_MODEL = Path(__file__).parent / "models" / "default.pt"

PotentialKind = Literal["emt", "checkpoint", "factory"]


@dataclass(frozen=True)
class PotentialInfo:
    """What is known about a potential without evaluating anything.

    Attributes:
        kind: ``"emt"``, ``"checkpoint"`` (the shipped default or a path) or ``"factory"``.
        elements: element symbols it can evaluate; None when unknown (a factory).
        metadata: the checkpoint's metadata (empty for EMT and factories).
    """

    kind: PotentialKind
    elements: frozenset[str] | None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PotentialSpec:
    """One parsed potential spec; build it with :func:`parse_potential`.

    Attributes:
        text: the spec as written; the name in every message, and a factory's identity.
        kind: ``"emt"``, ``"checkpoint"`` or ``"factory"``.
        path: the checkpoint file (:data:`DEFAULT_MODEL` for ``"default"``); None otherwise.
    """

    text: str
    kind: PotentialKind
    path: Path | None = None

    def checkpoint_file(self) -> Path:
        """The checkpoint file, checked to exist.

        Raises:
            ValueError: the spec is not a checkpoint.
            FileNotFoundError: naming the missing file.
        """
        if self.path is None:
            raise ValueError(f"'{self.text}' is not a checkpoint ('default' or a file path)")
        if not self.path.is_file():
            what = ("the shipped default model is missing" if self.text == "default"
                    else "checkpoint file not found")
            raise FileNotFoundError(f"{what}: {self.path}")
        return self.path

    def load_factory(self) -> Callable[[], Any]:
        """Import a ``module:callable`` spec's factory (running the module's top-level code).

        Raises:
            ValueError: not a factory spec, an empty module or name, an import error, or a
                name that is not callable; the message names the spec.
        """
        module_name, _, attr = self.text.partition(":")
        if self.kind != "factory" or not module_name or not attr:
            raise ValueError(f"'{self.text}' is neither an existing checkpoint file nor "
                             "'module:callable'")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"cannot import calculator factory '{self.text}': "
                             f"{type(exc).__name__}: {exc}") from exc
        if not callable(factory):
            raise ValueError(f"'{self.text}' is a {type(factory).__name__}, "
                             "not a callable factory")
        return factory

    def info(self) -> PotentialInfo:
        """Resolve the spec (load a checkpoint, import a factory) without evaluating anything.

        Raises:
            ValueError: the spec does not resolve (not a matdesign checkpoint, import error,
                not callable); the message says why.
            FileNotFoundError: a missing checkpoint file.
        """
        if self.kind == "emt":
            from ase.calculators.emt import parameters

            return PotentialInfo("emt", frozenset(parameters))
        if self.kind == "factory":
            self.load_factory()
            return PotentialInfo("factory", None)
        path = self.checkpoint_file()
        stat = path.stat()
        return _checkpoint_info(str(path.resolve()), stat.st_mtime_ns, stat.st_size)

    def calculator(self, *, dtype: str | torch.dtype = "float64", device: str = "cpu",
                   lean: bool = True) -> Any:
        """Build the ASE calculator; only a checkpoint imports torch.

        Args:
            dtype: ``"float64"`` or ``"float32"``; used by checkpoints only.
            device: torch device of a checkpoint's model, e.g. ``"cpu"`` or ``"cuda"``.
            lean: evaluate a two-body checkpoint through the fused layers (the default;
                see :func:`matdesign.calculator.load_calculator`).

        Returns:
            EMT, the factory's calculator, or a
            :class:`matdesign.calculator.MatdesignCalculator`.

        Raises:
            ValueError, FileNotFoundError: as :meth:`load_factory`, :meth:`checkpoint_file`
                and :func:`matdesign.checkpoint.load_potential`.
            TypeError: a factory returned something that is not an ASE calculator.
        """
        if self.kind == "emt":
            from ase.calculators.emt import EMT

            return EMT()
        if self.kind == "factory":
            calc = self.load_factory()()
            if not hasattr(calc, "get_potential_energy"):
                raise TypeError(f"'{self.text}' returned {type(calc).__name__}, "
                                "not an ASE calculator")
            return calc
        from matdesign.calculator import MatdesignCalculator

        return MatdesignCalculator.from_checkpoint(self.checkpoint_file(), dtype=dtype,
                                                   device=device, lean=lean)


def parse_potential(spec: str | PathLike[str] | PotentialSpec) -> PotentialSpec:
    """Parse a potential spec: checks only whether a file exists; reads and imports nothing.

    Args:
        spec: ``"default"``, ``"emt"``, a checkpoint path, ``"module:callable"``, or an
            already parsed spec (returned as is).

    Raises:
        TypeError: ``spec`` is not a string, a path or a :class:`PotentialSpec`.
    """
    if isinstance(spec, PotentialSpec):
        return spec
    if not isinstance(spec, (str, PathLike)):
        raise TypeError(f"expected 'default', 'emt', a checkpoint path or 'module:callable', "
                        f"got {spec!r}")
    text = str(spec)
    if text == "emt":
        return PotentialSpec(text, "emt")
    if text == "default":
        return PotentialSpec(text, "checkpoint", DEFAULT_MODEL)
    if ":" in text and not Path(text).exists():
        return PotentialSpec(text, "factory")
    return PotentialSpec(text, "checkpoint", Path(text))


@lru_cache(maxsize=16)
def _checkpoint_info(path: str, mtime_ns: int, size: int) -> PotentialInfo:
    """Species and metadata of a checkpoint, cached by (path, mtime, size)."""
    from matdesign.checkpoint import load_potential

    model = load_potential(path)
    return PotentialInfo("checkpoint", frozenset(model.species), dict(model.metadata))
