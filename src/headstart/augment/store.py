"""Where the latest label-safety audit of models trained on a data set is kept, so that
``train`` on the same data warns about the transforms it flagged.

Kept in the cache folder (``HEADSTART_CACHE``), keyed by the data's name (a built-in set) or its
resolved path; ``HEADSTART_CACHE=off`` keeps no store.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ..data.fingerprint import default_cache_dir
from ..data.sources import is_builtin
from ..fileio import atomic_write
from .audit import flagged_steps
from .policies import BuiltPolicy

AUDIT_FILE = "augment-audit.json"


def audit_store(data: str) -> Path | None:
    """Where the latest audit of models trained on ``data`` is kept for ``train`` to read."""
    cache = default_cache_dir()
    if cache is None or not data:
        return None
    key = data if is_builtin(data) else str(Path(data).resolve())
    return cache.parent / "audits" / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"


def audit_warnings(data: str, policy: BuiltPolicy, size: int) -> list[str]:
    """One warning per step of ``policy`` that an earlier audit of a run on the same data flagged."""
    path = audit_store(data)
    if path is None or not path.is_file():
        return []
    try:
        audit = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    bad = sorted(set(flagged_steps(policy.all_steps(), audit, size)))
    if not bad:
        return []
    return [
        f"the policy contains {', '.join(bad)}, which the label-safety audit of {audit.get('run', 'an earlier run')} flagged "
        f"(some class loses {audit['max_drop']:.0%}+ of its accuracy under it); the audit supports "
        f"--invariances {audit['recommended_invariances']!r}"
    ]


def keep_audit(data: str, result: dict[str, Any]) -> None:
    """Keep ``result`` as the latest audit of models trained on ``data``."""
    path = audit_store(data)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(result, indent=2, default=_plain)))


def _plain(obj: Any) -> Any:
    return obj.tolist() if hasattr(obj, "tolist") else str(obj)
