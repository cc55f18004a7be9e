"""The capacity grid reads without colour: every cell carries a mark, bookings their number."""

from __future__ import annotations

import datetime as dt
import re

from signaling.visits_pages import grid
from visits.model import Terminal

DAY = dt.date(2030, 1, 8)  # a Tuesday


def test_marks_per_cell():
    t = Terminal("pa-1", "prison-a", "inmate_room", "Room <1>", "2 09:00-10:00")
    off = Terminal("pa-2", "prison-a", "inmate_room", "Off", "2 09:00-10:00", active=False)
    html = grid(
        [t, off],
        {"pa-1": [(dt.datetime(2030, 1, 8, 9, 30), dt.datetime(2030, 1, 8, 9, 45))]},
        {("pa-1", "2030-01-08T09:00"): (42, "approved")},
        DAY,
    )
    row = html.split("<tr>")[2]
    assert "Room &lt;1&gt;" in row  # escaped
    cells = re.findall(r"<td class='cell (\w+)'", row)
    assert len(cells) == (19 - 7) * 4  # 07:00-19:00 in 15-minute cells
    assert cells[8:12] == ["approved", "free", "maintenance", "free"]  # 09:00 .. 09:45
    assert cells[:8] == ["closed"] * 8 and "<a href='#b42'>42</a>" in row
    assert set(re.findall(r"<td class='cell (\w+)'", html.split("<tr>")[3])) == {"closed"}


def test_early_hours_widen_the_grid():
    t = Terminal("bx-1", "bureau-x", "visitor_room", "B", "2 06:00-21:00")
    html = grid([t], {}, {}, DAY)
    assert ">06:00<" in html and ">20:00<" in html
