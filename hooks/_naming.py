"""Which modules hold attention, and what to call them (name, layer, stack, kind)."""
from __future__ import annotations

import dataclasses
import inspect
import re
from functools import lru_cache

from torch import nn

from ._types import Kind, Site

# first path part that names a stack -> reported stack
_STACK_MARKERS = {
    "encoder": "encoder", "decoder": "decoder",
    "text_model": "text", "language_model": "text",  # dual encoders and vision-language models
    "vision_model": "vision", "vision_tower": "vision", "visual": "vision",
}
_CROSS_MARKERS = ("crossattention", "cross_attention", "cross_attn", "encdecattention", "encoder_attn", "multihead_attn")
_ATTENTION_CLASS = re.compile(r"attention$", re.IGNORECASE)


@lru_cache(maxsize=None)
def _uses_attention_interface(cls: type) -> bool:
    """True when the class's forward dispatches through transformers' ALL_ATTENTION_FUNCTIONS."""
    try:
        src = inspect.getsource(cls.forward)
    except (OSError, TypeError):
        return False
    return "ALL_ATTENTION_FUNCTIONS" in src


def is_capturable(module: nn.Module) -> bool:
    return isinstance(module, nn.MultiheadAttention) or _uses_attention_interface(type(module))


def _stack_marker(name: str) -> str | None:
    for part in name.split("."):
        if part in _STACK_MARKERS:
            return _STACK_MARKERS[part]
    return None


def _layer_index(name: str) -> int:
    parts = name.split(".")
    start = next((i for i, p in enumerate(parts) if p in _STACK_MARKERS), 0)
    return next((int(p) for p in parts[start:] if p.isdigit()), 0)


def _kind(name: str, module: nn.Module) -> Kind:
    low = name.lower()
    if getattr(module, "is_cross_attention", False) or any(m in low for m in _CROSS_MARKERS):
        return "cross"
    return "self"


def make_site(name: str, module: nn.Module, multi_stack: bool) -> Site:
    """The Site of the module at path `name` (see `find_sites` for the rules)."""
    return Site(name or type(module).__name__, _layer_index(name), _stack_marker(name) if multi_stack else None,
                _kind(name, module))


def _renumber_collisions(sites: dict[int, Site], names: dict[int, str]) -> None:
    """Within a (stack, kind) whose first-integer layers repeat, number 0.. by all path integers,
    or by module order when those repeat too. `sites` is in module order."""
    groups: dict[tuple, list[int]] = {}
    for key, site in sites.items():
        groups.setdefault((site.stack, site.kind), []).append(key)
    for keys in groups.values():
        if len({sites[k].layer for k in keys}) == len(keys):
            continue
        path_ints = {k: tuple(int(p) for p in names[k].split(".") if p.isdigit()) for k in keys}
        distinct = sorted(set(path_ints.values()))
        if len(distinct) == len(keys):
            layer = {k: distinct.index(path_ints[k]) for k in keys}
        else:  # same integers under different parents (e.g. two unnamed towers)
            layer = {k: i for i, k in enumerate(keys)}
        for k in keys:
            sites[k] = dataclasses.replace(sites[k], layer=layer[k])


def find_sites(model: nn.Module) -> tuple[dict[int, Site], dict[int, str], bool]:
    """Map id(module) -> Site for every capturable attention module, and id(module) -> name for
    "opaque" ones: modules whose class name ends in "Attention", that are not capturable and have
    no capturable module above or below them (fused or hand-written attention we cannot observe).

    stack: "encoder"/"decoder" (or "text"/"vision" for CLIP-style towers) when the capturable modules
    live under more than one such path part, else None. layer: first integer in the path after
    the stack part (the block index); where that repeats within a (stack, kind), as in stage/block
    paths like "layers.1.blocks.0", layers are numbered 0.. in order of all the path's integers
    (or in module order when those repeat too, e.g. two unnamed towers). Root module without a name is called by its class name. The third value says
    whether the model has several stacks (for sites made later with `make_site`).
    """
    named = [(name, mod) for name, mod in model.named_modules()]
    capt = [(name, mod) for name, mod in named if is_capturable(mod)]
    stacks = {_stack_marker(name) for name, _ in capt}
    multi = len(stacks - {None}) > 1
    sites = {id(mod): make_site(name, mod, multi) for name, mod in capt}
    _renumber_collisions(sites, {id(mod): name for name, mod in capt})
    capt_names = [name for name, _ in capt]

    def related(name: str) -> bool:
        return any(
            c == name or name == "" or c.startswith(name + ".") or name.startswith(c + ".") or c == ""
            for c in capt_names
        )

    opaque = {
        id(mod): name or type(mod).__name__
        for name, mod in named
        if _ATTENTION_CLASS.search(type(mod).__name__) and not is_capturable(mod) and not related(name)
    }
    return sites, opaque, multi
