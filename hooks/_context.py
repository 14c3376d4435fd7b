"""The active captures of the current context (thread / asyncio task): a ContextVar chain."""
from __future__ import annotations

import contextvars
from dataclasses import dataclass, field

from torch import nn

from ._naming import make_site
from ._recorder import Recorder
from ._types import Site


@dataclass
class Active:
    """What one `with capture_attention(...)` block records: one model's sites and its recorder.

    `parent` is the capture this one is nested in (same thread/context); every capture in the
    chain that knows a module receives its weights.
    """

    recorder: Recorder
    sites: dict[int, Site]  # this capture's copy: sites found at call time are added here
    opaque: dict[int, str]
    names: dict[int, str]  # id(module) -> path, for every module of the model
    multi_stack: bool
    parent: Active | None = None
    seen: set[str] = field(default_factory=set)  # names of capturable modules that ran
    opaque_ran: set[str] = field(default_factory=set)
    pending: dict[int, list[tuple[bool, bool]]] = field(default_factory=dict)  # MHA: caller's (need, average)

    def site_of(self, module: nn.Module) -> Site | None:
        site = self.sites.get(id(module))
        if site is None and id(module) in self.names:
            # a module of this model that reached the attention function although its own forward
            # does not name the interface (it delegates to a helper): an attention module all the same
            site = self.sites[id(module)] = make_site(self.names[id(module)], module, self.multi_stack)
        return site


ACTIVE: contextvars.ContextVar[Active | None] = contextvars.ContextVar("attnscope_active", default=None)


def active_sites(module: nn.Module) -> list[tuple[Recorder, Site]]:
    """(recorder, site) of every capture in the current context that covers `module`, innermost first."""
    hits = []
    act = ACTIVE.get()
    while act is not None:
        site = act.site_of(module)
        if site is not None:
            act.seen.add(site.name)
            hits.append((act.recorder, site))
        act = act.parent
    return hits
