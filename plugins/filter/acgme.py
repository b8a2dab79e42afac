# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for the ACGME runbook playbooks."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from statistics import median

from ansible.errors import AnsibleFilterError


def violation_pattern(violations, hours=None, person_id=None):
    """RepeatedACGMEViolations step 2–3: how one person's violations repeat, and their load against PGY peers.

    ``violations`` and ``hours`` as acgme_compliance returns them; ``person_id`` limits to one person.
    """
    if not isinstance(violations, list):
        raise AnsibleFilterError(f"violation_pattern: expected the list of violations, got {type(violations).__name__}")
    wanted = None if person_id in (None, "") else str(person_id)
    mine = [v for v in violations if wanted is None or str(v.get("person_id")) == wanted]
    starts = []
    for v in mine:
        try:
            starts.append(datetime.fromisoformat(str(v["start"])))
        except (KeyError, ValueError) as exc:
            raise AnsibleFilterError(f"violation_pattern: violation without a valid start ({exc})") from exc
    result = {
        "count": len(mine),
        "by_rule": dict(Counter(v.get("rule") for v in mine).most_common()),
        "by_status": dict(Counter(v.get("status") for v in mine)),
        "by_weekday": dict(Counter(s.strftime("%A") for s in starts).most_common()),
        "by_month": dict(sorted(Counter(s.strftime("%Y-%m") for s in starts).items())),
        "first": min(starts).isoformat() if starts else None,
        "last": max(starts).isoformat() if starts else None,
        "repeated_rules": [rule for rule, n in Counter(v.get("rule") for v in mine).items() if n > 1],
    }
    if hours and wanted is not None:
        me = next((h for h in hours if str(h.get("person_id")) == wanted), None)
        if me is not None:
            peers = [h["max_avg_4w"] for h in hours if h.get("type") == "resident" and h.get("pgy_level") == me.get("pgy_level")
                     and str(h.get("person_id")) != wanted]
            result["load"] = {
                "max_avg_4w": me.get("max_avg_4w"),
                "peer_median_max_avg_4w": round(median(peers), 2) if peers else None,
                "peers": len(peers),
                "ratio_to_peers": round(me["max_avg_4w"] / median(peers), 2) if peers and median(peers) else None,
            }
    return result


class FilterModule:
    """sre.runbooks ACGME filters."""

    def filters(self):
        return {"violation_pattern": violation_pattern}
