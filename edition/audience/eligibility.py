"""Who gets a campaign: its audience, its exclusions, and the slots that must be filled.

Segments choose content; the audience chooses people. A customer outside the audience
(`audience:` segment names, any of them, or a rule), inside an exclusion (`exclude:`),
or left with a required slot empty (`require:`; by default every article and offer
slot the template uses) is `excluded`, with the reason, and gets no files and no send.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from edition.audience.selection import Selection
from edition.content.segments import Rule, Segmenter
from edition.outcomes import Reason


class Audience:
    """Decides, per customer, whether the campaign is for them (one per process)."""

    def __init__(self, audience: Rule | None, exclude: Rule | None, require: Sequence[str]):
        self.audience = audience
        self.exclude = exclude
        self.require = tuple(require)
        self._segmenters = {r.key: Segmenter([r.rule]) for r in (audience, exclude)
                            if r is not None and r.rule is not None}

    def exclusion(self, fields: Mapping[str, object], segments: Sequence[str],
                  selection: Selection) -> Reason | None:
        """Why this customer gets nothing, or None when the campaign is for them."""
        if self.audience is not None:
            inside, missing = self.audience.matches(fields, segments,
                                                    self._segmenters.get("audience"))
            if not inside:
                why = f"; field {missing!r} missing" if missing else ""
                return Reason("not_in_audience", f"not in the audience "
                              f"({self.audience.words()}){why}", "not in the audience")
        if self.exclude is not None:
            out, _ = self.exclude.matches(fields, segments, self._segmenters.get("exclude"))
            if out:
                return Reason("excluded", f"excluded by {self.exclude.words()}",
                              f"excluded by {self.exclude.words()}")
        if selection.held_out and selection.experiment is not None:
            name = selection.experiment.name
            return Reason("holdout", f"holdout (experiment {name})", f"holdout ({name})")
        if selection.experiment is not None and selection.experiment.waiting:
            name, note = selection.experiment.name, selection.experiment.note
            return Reason("experiment_waiting", f"waiting for the experiment's verdict "
                          f"({name}{'; ' + note if note else ''})",
                          f"waiting for the experiment's verdict ({name})")
        for slot in selection.slots:
            if slot.slot in self.require and not slot.chosen:
                # the report counts them together; each row names the modules it missed
                return Reason("nothing_to_send", f"nothing to send: slot {slot.slot!r} empty: "
                              f"{slot.candidates()}",
                              f"nothing to send: slot {slot.slot!r} empty")
        return None
