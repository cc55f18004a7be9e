"""Measure the signing path: `python -m esign.measure [runs]` prints a Markdown table.

Server time per signature is prepare + finish (the phone's own time is excluded);
freeze-to-sealed covers freeze, two parties, the mediator and the seal, without the
phones' time; sizes are of the PDF after each step. Loop stall: the longest time a probe
task sleeping 5 ms in a loop woke up late during each step (what media forwarding on the same
event loop would have waited).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import platform
import statistics
import sys
import tempfile
import time

from esign.ceremony import SignatureCeremony
from esign.evidence import build_evidence_zip
from esign.phone import PythonPhone
from esign.pki import LocalPki, local_timestamp_authority
from esign.protocol import IdentityAttestation
from esign.tsa import AuthorityTimeStamper


def _sample():
    from esign.agreement import Agreement, Mediator, Party

    return Agreement(
        case_no="MED-2026-000001",
        case_type="debt",
        session_id="bench",
        version=1,
        date="2026-11-25",
        language="zh-CN",
        organisation="城关区人民调解委员会",
        parties=[
            Party(side="applicant", name="张三", participant_id="a", id_digest="PID-" + "1" * 16),
            Party(side="respondent", name="李四", participant_id="r", id_digest="PID-" + "2" * 16),
        ],
        mediator=Mediator(name="王五", participant_id="m", staff_id="M-1"),
        terms=["被申请人于2026年12月31日前向申请人支付人民币伍万元整。"] * 6,
    )


async def longest_stall(step) -> tuple[float, float, object]:
    """Await ``step`` while a probe task sleeps 5 ms in a loop; return the probe's longest
    overshoot and the step's duration (seconds), and the step's result."""
    stalls: list[float] = [0.0]
    done = False

    async def probe() -> None:
        while not done:
            t = time.perf_counter()
            await asyncio.sleep(0.005)
            stalls.append(time.perf_counter() - t - 0.005)

    task = asyncio.create_task(probe())
    await asyncio.sleep(0.02)
    start = time.perf_counter()
    result = await step
    duration = time.perf_counter() - start
    done = True
    await task
    return max(stalls), duration, result


ATTEST = {
    "a": ("party", "张三", "PID-" + "1" * 16, ["invitation_token", "mediator_video_check"]),
    "r": ("party", "李四", "PID-" + "2" * 16, ["invitation_token", "one_time_code"]),
    "m": ("mediator", "王五", "", ["staff_login"]),
}


async def _one_run(pki: LocalPki, store: str) -> dict:
    stamper = AuthorityTimeStamper(local_timestamp_authority(pki))
    ceremony = SignatureCeremony(pki, stamper, store)
    server = 0.0
    stall: dict[str, list[float]] = {"freeze": [], "prepare": [], "finish": [], "seal": []}
    lag, freeze, _ = await longest_stall(ceremony.freeze(_sample()))
    stall["freeze"].append(lag)
    sizes = {"certified": len(ceremony.pdf)}
    per_signature = []
    for pid in ("a", "r", "m"):
        role, name, digest, checks = ATTEST[pid]
        who = IdentityAttestation("bench", pid, role, name, digest, checks)
        phone = PythonPhone(pid)
        t = time.perf_counter()
        enrolment, _ = ceremony.enrol(phone.enrol_request(ceremony.challenge(pid)), who)
        server += time.perf_counter() - t
        phone.accept(enrolment)
        phone.review(ceremony.pdf)
        lag, prepare, (request, _) = await longest_stall(ceremony.prepare(pid, "00" * 32))
        stall["prepare"].append(lag)
        reply = phone.sign(request)  # phone time, excluded
        lag, finish, _ = await longest_stall(ceremony.finish(reply))
        stall["finish"].append(lag)
        per_signature.append(prepare + finish)
        server += prepare + finish
        sizes[pid] = len(ceremony.pdf)
    lag, seal, _ = await longest_stall(ceremony.seal())
    stall["seal"].append(lag)
    sizes["sealed"] = len(ceremony.pdf)
    t = time.perf_counter()
    bundle = await build_evidence_zip(ceremony.pdf, pki=pki, timestamper=stamper, ledger=[])
    bundle_time = time.perf_counter() - t
    return {
        "freeze": freeze,
        "per_signature": per_signature,
        "seal": seal,
        "freeze_to_sealed": freeze + server + seal,
        "sizes": sizes,
        "bundle": bundle_time,
        "bundle_size": len(bundle),
        "stall": stall,
    }


async def _main(runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        pki = LocalPki.open(tmp, b"measurement passphrase", "Bench Org")
        results = [await _one_run(pki, f"{tmp}/store{i}") for i in range(runs)]
    med = statistics.median
    sig = [s for r in results for s in r["per_signature"]]
    sizes = results[-1]["sizes"]
    print(
        f"esign figures, {runs} runs, {dt.date.today()}, {platform.node()} "
        f"({platform.machine()}, Python {platform.python_version()})\n"
    )
    print("| figure | median | max |\n|---|---|---|")
    print(
        f"| freeze (render + certify) | {med(r['freeze'] for r in results):.3f} s "
        f"| {max(r['freeze'] for r in results):.3f} s |"
    )
    print(f"| server time per signature (prepare + finish) | {med(sig):.3f} s | {max(sig):.3f} s |")
    print(
        f"| seal (seal + DSS + document timestamp) | {med(r['seal'] for r in results):.3f} s "
        f"| {max(r['seal'] for r in results):.3f} s |"
    )
    f2s = [r["freeze_to_sealed"] for r in results]
    print(f"| freeze-to-sealed, 2 parties + mediator | {med(f2s):.3f} s | {max(f2s):.3f} s |")
    print(
        f"| evidence.zip build | {med(r['bundle'] for r in results):.3f} s "
        f"| {max(r['bundle'] for r in results):.3f} s |"
    )
    print("\n| longest event-loop stall during | median | max |\n|---|---|---|")
    for step in ("freeze", "prepare", "finish", "seal"):
        lags = [x * 1000 for r in results for x in r["stall"][step]]
        print(f"| {step} | {med(lags):.0f} ms | {max(lags):.0f} ms |")
    print("\n| PDF after | bytes | added |\n|---|---|---|")
    previous = None
    for step, label in (
        ("certified", "freeze + certification"),
        ("a", "applicant"),
        ("r", "respondent"),
        ("m", "mediator"),
        ("sealed", "seal + DSS + doc TS"),
    ):
        added = "" if previous is None else f"{sizes[step] - previous:+d}"
        print(f"| {label} | {sizes[step]} | {added} |")
        previous = sizes[step]
    print(f"\nevidence.zip: {results[-1]['bundle_size']} bytes")


if __name__ == "__main__":
    asyncio.run(_main(int(sys.argv[1]) if len(sys.argv) > 1 else 5))
