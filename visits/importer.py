"""CSV import of the directory: a province does not type 34 prisons and their people in by hand.

One file holds one kind of row (``sites``, ``terminals``, ``inmates``, ``visitors``, ``orgs``,
``workers``, ``maintenance``); its header names the columns. The import is **all or nothing**:
every line is inserted inside one transaction, each under its own savepoint so that one bad line
does not hide the next one's errors, and the transaction is committed only if no line failed and
this is not a dry run. A dry run therefore reports exactly what the real run would refuse,
duplicates and unknown sites included, line by line, and changes nothing.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from visits.directory import (
    insert_inmate,
    insert_maintenance,
    insert_org,
    insert_site,
    insert_terminal,
    insert_visitor,
    insert_worker,
)
from visits.model import VisitError
from visits.store import VisitStore

KINDS = {
    "sites": (insert_site, ("id", "kind", "name")),
    "terminals": (insert_terminal, ("id", "site", "kind", "name", "hours")),
    "inmates": (insert_inmate, ("facility", "number", "name", "grade")),
    "visitors": (
        insert_visitor,
        (
            "facility",
            "inmate_number",
            "name",
            "relationship",
            "id_number",
            "evidence",
            "approved_by",
            "reason",
            "expires",
        ),
    ),
    "orgs": (insert_org, ("id", "name")),
    "workers": (insert_worker, ("org", "name", "id_number")),
    "maintenance": (insert_maintenance, ("terminal", "start", "end")),
}
MAX_BYTES = 8 * 1024 * 1024
MAX_ROWS = 50_000


@dataclass
class LineError:
    line: int  # 1 is the header
    code: str
    message: str


@dataclass
class Report:
    kind: str
    rows: int = 0
    applied: bool = False
    errors: list[LineError] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [f"line {e.line}: {e.code}: {e.message}" for e in self.errors]


class _Rollback(Exception):
    pass


def decode(data: bytes) -> str:
    """UTF-8 (with or without the BOM spreadsheets write) or GB18030, the other encoding
    spreadsheets in China save CSV in."""
    if len(data) > MAX_BYTES:
        raise VisitError("invalid", f"file: at most {MAX_BYTES // (1024 * 1024)} MiB")
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise VisitError("invalid", "file: neither UTF-8 nor GB18030 text")


def run(store: VisitStore, kind: str, text: str, *, dry_run: bool) -> Report:
    """Check (and unless ``dry_run`` apply, if every line is good) one CSV text."""
    if kind not in KINDS:
        raise VisitError("invalid", f"kind: one of {', '.join(KINDS)}")
    inserter, required = KINDS[kind]
    report = Report(kind)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in required if c not in header]
    if missing:
        report.errors.append(LineError(1, "invalid", f"header: missing {', '.join(missing)}"))
        return report
    reader.fieldnames = header
    try:
        with store.tx() as db:
            try:
                for row in reader:
                    if report.rows >= MAX_ROWS:
                        report.errors.append(
                            LineError(reader.line_num, "invalid", f"file: at most {MAX_ROWS} rows")
                        )
                        break
                    report.rows += 1
                    if None in row:  # more cells than the header has names
                        report.errors.append(
                            LineError(reader.line_num, "invalid", "more cells than columns")
                        )
                        continue
                    db.execute("SAVEPOINT line")
                    try:
                        inserter(db, store, {k: (v or "") for k, v in row.items()})
                    except VisitError as exc:
                        db.execute("ROLLBACK TO line")
                        report.errors.append(LineError(reader.line_num, exc.code, exc.message))
                    db.execute("RELEASE line")
            except csv.Error as exc:
                report.errors.append(LineError(reader.line_num, "invalid", f"csv: {exc}"))
            if dry_run or report.errors:
                raise _Rollback
            report.applied = True
    except _Rollback:
        pass
    return report
