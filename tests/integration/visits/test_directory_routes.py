"""The directory over HTTP and the command line: terminal credentials shown once and revocable,
CSV import with a per-line report (dry run and all-or-nothing), grants and import from the CLI."""

from __future__ import annotations

import re

import aiohttp

import server
from tests.integration.visits.conftest import staff_session

INMATES = "facility,number,name,grade\nprison-a,A-500,新人,normal\nprison-a,A-501,x,vip\n"


async def test_credentials_are_issued_once_and_revoked(province):
    url = province.url
    admin, csrf = await staff_session(url, "admin")
    async with admin:
        async with admin.get(url + "/visits/sites/nowhere/directory") as r:
            assert r.status == 404  # a province-wide grant may learn that a site does not exist
        async with admin.get(url + "/visits/sites/prison-a/directory") as r:
            html = await r.text()
        assert "data-terminal='pa-1'" in html and "A-001" in html
        async with admin.post(
            url + "/visits/sites/prison-a/terminals/pa-1/credential", data={"csrf": csrf}
        ) as r:
            token = re.search(r"<code class='token' data-token>([^<]+)</code>", await r.text())[1]
        assert province.directory.terminal_for_token(token).id == "pa-1"
        async with admin.post(
            url + "/visits/sites/prison-b/terminals/pa-1/revoke",  # not a terminal of prison-b
            data={"csrf": csrf},
            allow_redirects=False,
        ) as r:
            assert r.status == 404
        async with admin.post(
            url + "/visits/sites/prison-a/terminals/pa-1/revoke",
            data={"csrf": "forged"},
            allow_redirects=False,
        ) as r:
            assert r.status == 403
        assert province.directory.terminal_for_token(token) is not None
        async with admin.post(
            url + "/visits/sites/prison-a/terminals/pa-1/revoke",
            data={"csrf": csrf},
            allow_redirects=False,
        ) as r:
            assert r.status == 303
        assert province.directory.terminal_for_token(token) is None
    off_a, csrf_a = await staff_session(url, "off-a")  # officers see, only admins issue
    async with off_a:
        async with off_a.get(url + "/visits/sites/prison-a/directory") as r:
            assert r.status == 200 and "/credential" not in await r.text()
        async with off_a.post(
            url + "/visits/sites/prison-a/terminals/pa-1/credential",
            data={"csrf": csrf_a},
            allow_redirects=False,
        ) as r:
            assert r.status == 403
        assert not province.directory.has_credential("pa-1")


def upload(csrf, kind, text, dry_run):
    form = aiohttp.FormData()
    form.add_field("csrf", csrf)
    form.add_field("kind", kind)
    if dry_run:
        form.add_field("dry_run", "1")
    form.add_field("file", text.encode(), filename="x.csv", content_type="text/csv")
    return form


async def test_csv_import_reports_lines_and_applies_all_or_nothing(province):
    url = province.url
    admin, csrf = await staff_session(url, "admin")
    before = province.count("inmates")
    async with admin:
        for dry_run in (True, False):
            async with admin.post(
                url + "/visits/import", data=upload(csrf, "inmates", INMATES, dry_run)
            ) as r:
                html = await r.text()
                assert r.status == 400 and "<td>3</td><td>invalid</td>" in html
            assert province.count("inmates") == before
        good = INMATES.rsplit("prison-a,A-501", 1)[0]
        async with admin.post(
            url + "/visits/import", data=upload(csrf, "inmates", good, False)
        ) as r:
            assert r.status == 200 and "data-applied='1'" in await r.text()
        assert province.count("inmates") == before + 1
        async with admin.post(
            url + "/visits/import", data=upload("forged", "inmates", good, False)
        ) as r:
            assert r.status == 403
        async with admin.post(
            url + "/visits/import", data=upload(csrf, "people", good, False)
        ) as r:
            assert r.status == 400
        async with admin.post(url + "/visits/import", data={"csrf": csrf, "kind": "inmates"}) as r:
            assert r.status == 400  # no file
    off_a, csrf_a = await staff_session(url, "off-a")
    async with off_a:
        other = "facility,number,name,grade\nprison-a,A-600,y,normal\n"
        async with off_a.post(
            url + "/visits/import", data=upload(csrf_a, "inmates", other, False)
        ) as r:
            assert r.status == 403
    assert province.count("inmates") == before + 1


def test_cli_grant_and_import(tmp_path, capsys):
    data = str(tmp_path)
    sites = tmp_path / "sites.csv"
    sites.write_text(
        "id,kind,name\nprison-a,prison,A 监狱\nbureau-x,bureau,X 司法局\n", encoding="utf-8"
    )
    assert (
        server.main(
            ["visits", "import", "--kind", "sites", str(sites), "--dry-run", "--data-dir", data]
        )
        == 0
    )
    assert "nothing changed" in capsys.readouterr().out
    assert server.main(["visits", "import", "--kind", "sites", str(sites), "--data-dir", data]) == 0
    assert "applied" in capsys.readouterr().out
    bad = tmp_path / "inmates.csv"
    bad.write_text("facility,number,name,grade\nprison-a,1,x,normal\nprison-q,2,y,normal\n")
    assert server.main(["visits", "import", "--kind", "inmates", str(bad), "--data-dir", data]) == 1
    out = capsys.readouterr().out
    assert "line 3: not_found" in out and "nothing changed" in out
    assert (
        server.main(
            [
                "visits",
                "import",
                "--kind",
                "inmates",
                str(tmp_path / "missing.csv"),
                "--data-dir",
                data,
            ]
        )
        == 2
    )
    # grants need an account
    assert (
        server.main(
            ["user", "grant", "li", "--role", "officer", "--site", "prison-a", "--data-dir", data]
        )
        == 2
    )
    from rooms.accounts import AccountStore

    accounts = AccountStore(tmp_path / "accounts.sqlite3")
    accounts.add("li", "Li", ["officer"], "long enough password")
    accounts.close()
    assert (
        server.main(
            ["user", "grant", "li", "--role", "officer", "--site", "prison-a", "--data-dir", data]
        )
        == 0
    )
    assert (
        server.main(
            ["user", "grant", "li", "--role", "officer", "--site", "bureau-x", "--data-dir", data]
        )
        == 2
    )
    capsys.readouterr()
    assert server.main(["user", "grants", "li", "--data-dir", data]) == 0
    assert capsys.readouterr().out.strip() == "officer prison-a"
    assert (
        server.main(
            ["user", "revoke", "li", "--role", "officer", "--site", "prison-a", "--data-dir", data]
        )
        == 0
    )
    assert (
        server.main(
            ["user", "revoke", "li", "--role", "officer", "--site", "prison-a", "--data-dir", data]
        )
        == 1
    )
