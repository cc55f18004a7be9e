"""The command line of visitation: ``server.py user grant|revoke|grants`` (site-scoped roles of
staff accounts), ``server.py visits import --kind KIND FILE [--dry-run]`` and ``server.py visits
migrate`` (cluster/visits_migrate.py).

They work on the store server.py opens: the data directory's file, or with ``--redis`` the
cluster's visits database (cluster/visits.py). Run them on the server's machine as the user the
server runs as (the files are mode 0600).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rooms.accounts import Accounts
from visits import importer
from visits.access import GRANT_ROLES
from visits.directory import Directory
from visits.model import VisitError
from visits.store import VisitStore


def add_user_parsers(u_sub) -> None:
    """``user grant``, ``user revoke``, ``user grants`` under the existing ``user`` command."""
    for name, text in (("grant", "grant a visitation role at a site"), ("revoke", "take it back")):
        g = u_sub.add_parser(name, help=text)
        g.add_argument("username")
        g.add_argument("--role", required=True, choices=sorted(GRANT_ROLES))
        g.add_argument("--site", required=True, help="a site id, or * for the whole province")
        g.add_argument("--data-dir", dest="data_dir")
        g.add_argument("--redis", dest="redis_url", help="a cluster's visits database")
    s = u_sub.add_parser("grants", help="list a user's visitation grants")
    s.add_argument("username")
    s.add_argument("--data-dir", dest="data_dir")
    s.add_argument("--redis", dest="redis_url", help="a cluster's visits database")


def add_visits_parser(sub) -> None:
    v = sub.add_parser("visits", help="remote visitation tools")
    v_sub = v.add_subparsers(dest="visits_command", required=True)
    i = v_sub.add_parser("import", help="import a CSV file (all or nothing)")
    i.add_argument("file")
    i.add_argument("--kind", required=True, choices=sorted(importer.KINDS))
    i.add_argument("--dry-run", action="store_true", help="report errors per line, change nothing")
    i.add_argument("--data-dir", dest="data_dir")
    i.add_argument("--redis", dest="redis_url", help="a cluster's visits database")
    m = v_sub.add_parser(
        "migrate",
        help="copy the data directory's visits.sqlite3 into the cluster's Redis (server"
        " stopped; docs/scaling.md, The visits database on Redis)",
    )
    m.add_argument("--data-dir", dest="data_dir")
    m.add_argument("--redis", dest="redis_url", help="the cluster's Redis")


def user_command(args: argparse.Namespace, store: VisitStore, accounts: Accounts) -> int:
    """Grants of a staff account (the account looked up in ``accounts``, the caller's);
    closes ``store``."""
    try:
        directory = Directory(store)
        if args.user_command == "grants":
            for g in directory.grants(args.username):
                print(g.role, g.site)
            return 0
        if accounts.get(args.username) is None:
            print(f"not_found: no account {args.username!r}", file=sys.stderr)
            return 2
        if args.user_command == "revoke":
            done = directory.revoke_grant(args.username, args.role, args.site)
            print("revoked" if done else "no such grant")
            return 0 if done else 1
        directory.grant(args.username, args.role, args.site)
        print(f"granted {args.role} at {args.site} to {args.username}")
        return 0
    except VisitError as exc:
        print(f"{exc.code}: {exc.message}", file=sys.stderr)
        return 2
    finally:
        store.close()


def visits_command(args: argparse.Namespace, store: VisitStore) -> int:
    """``visits import``; closes ``store``."""
    try:
        text = importer.decode(Path(args.file).read_bytes())
        report = importer.run(store, args.kind, text, dry_run=args.dry_run)
    except (OSError, VisitError) as exc:
        print(f"{getattr(exc, 'code', 'invalid')}: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 2
    finally:
        store.close()
    for line in report.lines():
        print(line)
    state = "applied" if report.applied else "nothing changed"
    print(f"{report.kind}: {report.rows} rows, {len(report.errors)} errors, {state}")
    return 1 if report.errors else 0
