"""Leaks and injection (issue 12, items 8, 9, 11): reason codes instead of evidence values in
the billing export, keyed pseudonyms, neutralised CSV cells, inert terminal output and
one-line errors for bad query parameters."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from linker import pipeline
from linker.cells import FORMULA_LEADS, neutralise_cell, terminal_text
from linker.cli import cli
from linker.pseudonyms import KEY_ENV, Pseudonymiser
from linker.queries import format_result
from linker.reasons import codes_markdown, reason_codes
from linker.signals import EvidenceInputs, Signal, SignalValues, registered_signal
from linker.synth import generate_world

KEY = "a-test-key-of-32-bytes-0123456789"
FORMULA_ID = "=cmd|' /C calc'!A0"
FORMULA_BILLING = "@SUM(1+1)*cmd|' /C calc'!A0"
CODE_TOKEN = re.compile(r"^([a-z][a-z0-9_]*):([0-9]+)$")
_EMAIL = re.compile(r"[A-Za-z0-9._%+#-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_IPV4 = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("leak-world")
    generate_world(1000, 3, out)
    return out


def _run(world: Path, out: Path, *extra: str, env: dict[str, str] | None = None) -> Path:
    result = CliRunner().invoke(cli, ["run", str(world), "--out", str(out), *extra], env=env)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def ran(world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _run(world, tmp_path_factory.mktemp("ran") / "takedown.csv")


@pytest.fixture(scope="module")
def pseudonymised(world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _run(
        world,
        tmp_path_factory.mktemp("hmac") / "takedown.csv",
        "--pseudonymise",
        env={KEY_ENV: KEY},
    )


def _identifier_values(world: Path) -> set[str]:
    """E-mail addresses, IPs, card and device fingerprints and prompt fingerprints of the
    world (raw and lower-cased)."""
    accounts = pd.read_csv(world / "accounts.csv", dtype=str)
    events = pd.read_csv(world / "events.csv", dtype=str)
    payments = pd.read_csv(world / "payments.csv", dtype=str)
    values: set[str] = set()
    for frame, columns in (
        (accounts, ["email", "signup_ip", "device_id"]),
        (events, ["ip", "device_id", "prompt_fingerprint"]),
        (payments, ["payment_fingerprint"]),
    ):
        for column in columns:
            values |= set(frame[column].dropna())
    return values | {v.lower() for v in values}


def _cited(text: str, values: set[str]) -> set[str]:
    tokens = set(re.split(r"[\s,;()]+", text))
    return {t for t in tokens if t in values} | set(_EMAIL.findall(text)) | set(_IPV4.findall(text))


# --- item 8: reason codes, not values ---


def test_export_carries_codes_and_no_email_or_ip(ran: Path, world: Path) -> None:
    values = _identifier_values(world)
    scores = pd.read_parquet(ran.with_name("takedown.run") / "scores.parquet")
    flagged = scores[scores["action"] != "none"]
    cited = set().union(*(_cited(t, values) for t in flagged["reasons"]))
    # The analysts' reasons name e-mail addresses and IPs (the world makes sure of it) ...
    assert any(_EMAIL.fullmatch(v) for v in cited), "no e-mail address in the reasons"
    assert any(_IPV4.fullmatch(v) for v in cited), "no IP in the reasons"
    # ... the billing export names none of them, in any format.
    exported = ran.read_text(encoding="utf-8")
    for other in ("jsonl", "parquet"):
        target = ran.with_name(f"again.{other}")
        result = CliRunner().invoke(
            cli, ["export", "--run-dir", str(ran.with_name("takedown.run")), "--out", str(target)]
        )
        assert result.exit_code == 0, result.output
        exported += pd.read_parquet(target).to_csv() if other == "parquet" else target.read_text()
    leaked = sorted(v for v in cited if v in exported)
    assert not leaked, leaked[:5]
    assert not _EMAIL.search(exported) and not _IPV4.search(exported)


def test_exported_codes_come_from_the_registry(ran: Path) -> None:
    frame = pd.read_csv(ran, dtype=str, keep_default_na=False)
    known = {c.code for c in reason_codes()}
    assert (frame["reason_codes"] != "").all()
    seen = set()
    for codes in frame["reason_codes"]:
        for token in codes.split(";"):
            match = CODE_TOKEN.match(token)
            assert match, token
            assert match.group(1) in known, token
            seen.add(match.group(1))
    assert {"shared_ip", "signup_burst"} <= seen


def test_codes_table_in_the_docs_matches_the_registry() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "pipeline.md").read_text()
    assert codes_markdown() in doc, "docs/pipeline.md: regenerate the reason code table"


class _Toy(Signal):
    """A toy signal that explains accounts."""

    name = "toy_leak"
    level = "account"
    default_weight = 0.0
    code = "toy_code"
    count_means = "always 7"

    def compute(self, inputs: EvidenceInputs) -> SignalValues:
        return SignalValues(np.zeros(inputs.n_clusters), account=np.zeros(inputs.n_accounts))

    def account_reason(
        self, inputs: EvidenceInputs, values: SignalValues, rows: np.ndarray
    ) -> np.ndarray:
        return np.full(len(rows), "toy", dtype=object)


class _Clash(_Toy):
    name = "toy_clash"
    code = "shared_ip"


def test_a_signal_declares_its_code_once_in_the_registry() -> None:
    assert "toy_code" not in {c.code for c in reason_codes()}
    with registered_signal(_Toy()):
        table = {c.code: c for c in reason_codes()}
        assert table["toy_code"].count == "always 7"
        assert "toy_code" in codes_markdown()
    with registered_signal(_Clash()), pytest.raises(ValueError, match="shared_ip"):
        reason_codes()


def test_analysts_keep_the_values(ran: Path) -> None:
    run_dir = ran.with_name("takedown.run")
    scores = pd.read_parquet(run_dir / "scores.parquet")
    row = scores[scores["reasons"].str.contains("IP ", regex=False)].iloc[0]
    shown = pipeline.explain(run_dir, row["account_id"])
    assert shown.reasons == row["reasons"] and _IPV4.search(shown.reasons)
    assert shown.reason_codes == row["reason_codes"]


# --- item 8: keyed pseudonyms ---


def _artefact_text(run_dir: Path) -> str:
    parts = []
    for name in ("observations", "identifiers", "scores", "clusters", "links", "evidence"):
        parts.append(pd.read_parquet(run_dir / f"{name}.parquet").to_csv())
    parts.append((run_dir / "manifest.json").read_text())
    return "\n".join(parts)


def test_pseudonymise_replaces_values_everywhere(
    ran: Path, pseudonymised: Path, world: Path
) -> None:
    values = _identifier_values(world)
    plain_dir, hmac_dir = ran.with_name("takedown.run"), pseudonymised.with_name("takedown.run")
    plain = pd.read_parquet(plain_dir / "scores.parquet")
    cited = set().union(*(_cited(t, values) for t in plain["reasons"]))
    assert cited
    text = _artefact_text(hmac_dir)
    leaked = sorted(v for v in cited if v in text)
    assert not leaked, leaked[:5]
    assert not _EMAIL.search(text)
    observations = pd.read_parquet(hmac_dir / "observations.parquet")
    assert observations["value"].str.startswith("h:").all()
    hashed = pd.read_parquet(hmac_dir / "scores.parquet")
    assert hashed["reasons"].str.contains("h:", regex=False).any()
    # The linking is that of the raw values: the same export, byte for byte.
    assert pseudonymised.read_bytes() == ran.read_bytes()
    # The key appears nowhere.
    assert (
        KEY not in text
        and KEY not in (pseudonymised.parent / "takedown.csv.manifest.json").read_text()
    )


def test_pseudonyms_are_stable_for_a_key_and_change_with_it(
    world: Path, pseudonymised: Path, tmp_path: Path
) -> None:
    again = _run(world, tmp_path / "a" / "t.csv", "--pseudonymise", env={KEY_ENV: KEY})
    other = _run(world, tmp_path / "b" / "t.csv", "--pseudonymise", env={KEY_ENV: KEY + "x"})
    first = pd.read_parquet(pseudonymised.with_name("takedown.run") / "identifiers.parquet")
    same = pd.read_parquet(again.with_name("t.run") / "identifiers.parquet")
    changed = pd.read_parquet(other.with_name("t.run") / "identifiers.parquet")
    pd.testing.assert_frame_equal(first, same)
    assert not set(first["value"]) & set(changed["value"])
    assert again.read_bytes() == other.read_bytes() == pseudonymised.read_bytes()


@pytest.mark.parametrize("key", [None, "", "too-short"])
def test_pseudonymise_without_a_key_is_one_line(
    world: Path, tmp_path: Path, key: str | None
) -> None:
    env = {KEY_ENV: key} if key is not None else {}
    result = CliRunner().invoke(
        cli, ["run", str(world), "--out", str(tmp_path / "t.csv"), "--pseudonymise"], env=env
    )
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and KEY_ENV in lines[0], result.output
    assert not (tmp_path / "t.csv").exists() and not (tmp_path / "t.run").exists()


def test_pseudonymiser_keeps_networks_and_hides_the_key() -> None:
    p = Pseudonymiser(KEY.encode())
    assert KEY not in repr(p)
    a, b, c = p.ip("10.1.2.3"), p.ip("10.1.2.99"), p.ip("10.1.3.3")
    assert a.split("/")[0] == b.split("/")[0] != c.split("/")[0]
    assert a != b and "10.1" not in a
    assert p.allowlist_entry("email_domain uni.edu") == f"email_domain {p.value('uni.edu')}"
    assert p.allowlist_entry("account_id A-1") == "account_id A-1"


def test_resuming_with_another_key_is_refused(world: Path, tmp_path: Path) -> None:
    out = _run(world, tmp_path / "t.csv", "--pseudonymise", env={KEY_ENV: KEY})
    result = CliRunner().invoke(
        cli,
        ["run", str(world), "--out", str(out), "--pseudonymise", "--from", "score"],
        env={KEY_ENV: KEY + "other"},
    )
    assert result.exit_code == 2 and "another pseudonym key" in result.output, result.output


# --- item 9: formula cells in every CSV ---


@pytest.fixture(scope="module")
def formula_world(world: Path, ran: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The world with one suspended account renamed to a formula, billed to a formula, and
    an events row of an unknown formula account (quarantined)."""
    export = pd.read_csv(ran, dtype=str, keep_default_na=False)
    victim = export.loc[export["action"] == "suspend", "account_id"].iloc[0]
    billing = export.loc[export["account_id"] == victim, "billing_customer_id"].iloc[0]
    out = tmp_path_factory.mktemp("formula-world")
    for name in ("accounts.csv", "payments.csv", "events.csv"):
        text = (world / name).read_text(encoding="utf-8")
        text = text.replace(f'"{victim}"', f'"{FORMULA_ID}"')
        if billing:
            text = text.replace(f'"{billing}"', f'"{FORMULA_BILLING}"')
        if name == "events.csv":
            line = text.splitlines()[1].split(",", 1)[1]
            text += f"\"-2+3+cmd|' /C calc'!A0\",{line}\n"
        (out / name).write_text(text, encoding="utf-8")
    return out


def _cells(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def _assert_neutral(rows: list[list[str]], numeric: tuple[str, ...] = ()) -> None:
    header = rows[0]
    skip = {header.index(c) for c in numeric if c in header}
    for row in rows[1:]:
        for i, cell in enumerate(row):
            if i not in skip:
                assert not cell.startswith(FORMULA_LEADS), (header[i], cell)


def test_formula_ids_are_neutralised_in_run_and_export(formula_world: Path, tmp_path: Path) -> None:
    out = _run(formula_world, tmp_path / "takedown.csv")
    rows = _cells(out)
    _assert_neutral(rows, numeric=("score", "cluster_size"))
    ids = {r[0] for r in rows[1:]}
    assert "'" + FORMULA_ID in ids
    assert "'" + FORMULA_BILLING in {r[1] for r in rows[1:]}
    result = CliRunner().invoke(
        cli,
        ["export", "--run-dir", str(tmp_path / "takedown.run"), "--out", str(tmp_path / "re.csv")],
    )
    assert result.exit_code == 0, result.output
    assert _cells(tmp_path / "re.csv") == rows
    # The machine formats carry the value itself.
    result = CliRunner().invoke(
        cli,
        ["export", "--run-dir", str(tmp_path / "takedown.run"), "--out", str(tmp_path / "j.jsonl")],
    )
    records = [json.loads(x) for x in (tmp_path / "j.jsonl").read_text().splitlines()]
    assert FORMULA_ID in {r["account_id"] for r in records}
    # The quarantine file of the unknown formula account.
    quarantine = tmp_path / "takedown.run" / "quarantine" / "events.csv"
    q_rows = _cells(quarantine)
    _assert_neutral(q_rows)
    assert any(cell.startswith("'-2+3+cmd") for row in q_rows for cell in row)
    # `linker expand` ranks the formula account near its ring-mates.
    seeds = tmp_path / "seeds.csv"
    mates = [r[0] for r in rows[1:6] if r[0] != "'" + FORMULA_ID][:3]
    seeds.write_text("account_id\n" + "\n".join(mates) + "\n")
    ranked = tmp_path / "ranked.csv"
    result = CliRunner().invoke(
        cli,
        [
            "expand",
            str(formula_world),
            "--seeds",
            str(seeds),
            "--top",
            "1000",
            "--out",
            str(ranked),
            "--run-dir",
            str(tmp_path / "takedown.run"),
        ],
    )
    assert result.exit_code == 0, result.output
    r_rows = _cells(ranked)
    _assert_neutral(r_rows, numeric=("score",))
    assert "'" + FORMULA_ID in {r[0] for r in r_rows[1:]}


def test_query_csv_neutralises_text_but_not_numbers() -> None:
    text = format_result(
        ["account_id", "score", "n"],
        [(FORMULA_ID, 0.5, -3), ("+1+cmd", 1.0, 2), ("'quoted", None, 0), ("-5", 2.0, 1)],
        "csv",
    )
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[1] == ["'" + FORMULA_ID, "0.5", "-3"]
    assert rows[2][0] == "'+1+cmd" and rows[3][0] == "''quoted"
    assert rows[4][0] == "-5"  # a plain number is no formula


@pytest.mark.parametrize("lead", ["=", "+", "-", "@", "\t", "\r", "'"])
def test_the_rule_is_reversible(lead: str) -> None:
    value = lead + "x"
    cell = neutralise_cell(value)
    assert cell == "'" + value and cell[1:] == value
    assert neutralise_cell("x" + lead) == "x" + lead
    if lead in "+-":
        assert neutralise_cell(lead + "12.5") == lead + "12.5"


# --- item 9: terminal output ---

_NASTY = "acct\x1b[2J\x1b]0;pwned\x07\x9b31m\u202e-1\r"


def test_query_table_strips_escape_sequences() -> None:
    text = format_result(["account_id"], [(_NASTY,), ("two\nlines",)], "table")
    assert "\x1b" not in text and "\x07" not in text and "\x9b" not in text
    assert "\u202e" not in text and "\r" not in text
    assert "acct-1" in text and "twolines" in text


def test_explain_output_strips_escape_sequences(ran: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = ran.with_name("takedown.run")
    real = pipeline.explain(run_dir, pd.read_csv(ran, dtype=str)["account_id"].iloc[0])
    fake = pipeline.Explanation(**{**real.__dict__, "reasons": "device " + _NASTY})
    monkeypatch.setattr(pipeline, "explain", lambda *_a, **_k: fake)
    result = CliRunner().invoke(cli, ["explain", "x", "--run-dir", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "device acct-1" in result.output


def test_error_messages_strip_escape_sequences(ran: Path) -> None:
    result = CliRunner().invoke(
        cli, ["explain", _NASTY, "--run-dir", str(ran.with_name("takedown.run"))]
    )
    assert result.exit_code == 2, result.output
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_terminal_text_keeps_plain_lines() -> None:
    assert terminal_text("a\tb\nc") == "a\tb\nc"
    assert terminal_text("a\tb\nc", one_line=True) == "abc"


# --- item 11: query parameters ---


@pytest.mark.parametrize(
    "value", ["1e20", "-1", "2.5", "100000000000000000000", "abc", "", "nan", "١٢", "\x1b[31m"]
)
def test_bad_query_limits_exit_2_in_one_line(value: str) -> None:
    result = CliRunner().invoke(
        cli,
        ["query", "top_clusters", "--param", f"limit={value}"],
        env={"NEO4J_URI": "bolt://127.0.0.1:9", "NEO4J_PASSWORD": "x"},
    )
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "limit" in lines[0], result.output
    assert "internal error" not in result.output and "\x1b" not in result.output


def test_neo4j_load_of_a_pseudonymised_run_holds_pseudonyms(
    pseudonymised: Path, ran: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from linker.errors import SettingsError
    from linker.neo4j.loader import prepare_load

    run_dir = pseudonymised.with_name("takedown.run")
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(SettingsError, match=KEY_ENV):
        prepare_load(run_dir)
    monkeypatch.setenv(KEY_ENV, KEY)
    steps = {s.name: s.frame for s in prepare_load(run_dir).steps}
    accounts = steps["accounts"]
    for column in ("email", "signup_ip", "device_id"):
        present = accounts[column].dropna()
        assert len(present) and present.str.startswith("h:").all(), column
    identifiers = set(pd.read_parquet(run_dir / "identifiers.parquet")["value"])
    assert set(accounts["email"].dropna()) & identifiers  # the same pseudonyms as the nodes
    plain = {s.name: s.frame for s in prepare_load(ran.with_name("takedown.run")).steps}
    assert len(steps["ip_in_subnet"]) == len(plain["ip_in_subnet"]) > 0
    monkeypatch.setenv(KEY_ENV, KEY + "other")
    with pytest.raises(Exception, match="another key"):
        prepare_load(run_dir)
