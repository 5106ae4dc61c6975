"""Export of a project's resolved preferences (TRL standard or conversational, CSV) or of every label,
written to a temporary file and renamed into place, so a failed export leaves no half file."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

from studio.store.db import ProjectError
from studio.store.formats import EXPORT_FORMATS, PROGRESS_EVERY, Progress
from studio.store.imports import visible_sql
from studio.store.project import Project


@dataclasses.dataclass
class ExportReport:
    file: str
    format: str
    rows: int
    left_out: dict[str, int]
    """For resolved preferences: pairs not exported as tie, both_bad, no_majority or skipped."""


def _resolved_rows(project: Project, split: str | None) -> tuple[Iterator[dict], dict[str, int], int]:
    """Resolved preferences with their texts, in pair order, streamed from one query."""
    prefs, left_out = project.resolve(split)
    by_pair = {p.pair_id: p for p in prefs}

    def rows() -> Iterator[dict]:
        sql = ("SELECT p.id, pr.text, pr.messages, pr.split, ra.id, ra.text, rb.text FROM pairs p "
               "JOIN prompts pr ON pr.id = p.prompt_id JOIN responses ra ON ra.id = p.response_a_id "
               "JOIN responses rb ON rb.id = p.response_b_id WHERE EXISTS (SELECT 1 FROM labels l WHERE "
               f"l.pair_id = p.id AND l.state = 'current') AND {visible_sql('p')} ORDER BY p.id")
        for pair_id, ptext, pmsgs, psplit, ra_id, a_text, b_text in project._conn.execute(sql):
            pref = by_pair.get(pair_id)
            if pref is None:
                continue
            chosen, rejected = (a_text, b_text) if pref.chosen_id == ra_id else (b_text, a_text)
            yield {"pair_id": pair_id, "prompt": ptext, "messages": json.loads(pmsgs) if pmsgs else None,
                   "split": psplit, "chosen": chosen, "rejected": rejected}

    return rows(), left_out, len(prefs)


def _label_rows(project: Project, split: str | None) -> Iterator[dict]:
    sql = ("SELECT l.id, l.pair_id, pr.id, pr.text, pr.messages, pr.split, ra.text, rb.text, a.name, l.choice, "
           "l.strength, l.rationale, l.shown_left, l.seconds, l.created_at, l.state, l.ended_at, l.replaces_id "
           "FROM labels l JOIN annotators a ON a.id = l.annotator_id JOIN pairs p ON p.id = l.pair_id "
           "JOIN prompts pr ON pr.id = p.prompt_id JOIN responses ra ON ra.id = p.response_a_id "
           f"JOIN responses rb ON rb.id = p.response_b_id WHERE {visible_sql('p')}"
           + (" AND pr.split = ?" if split else "") + " ORDER BY l.id")
    for row in project._conn.execute(sql, (split,) if split else ()):
        (lid, pair_id, prompt_id, ptext, pmsgs, psplit, a_text, b_text, name, choice, strength, rationale,
         shown_left, seconds, created, state, ended, replaces) = row
        yield {"label_id": lid, "pair_id": pair_id, "prompt_id": prompt_id,
               "prompt": json.loads(pmsgs) if pmsgs else ptext, "split": psplit, "response_a": a_text,
               "response_b": b_text, "annotator": name, "choice": choice, "strength": strength,
               "rationale": rationale, "shown_left": shown_left, "seconds": seconds, "created_at": created,
               "state": state, "ended_at": ended, "replaces_label_id": replaces}


def _atomic_writer(out: Path) -> tuple[io.TextIOWrapper, Callable[[bool], None]]:
    """A temporary file next to `out`, renamed over it on success, so a failed export leaves no half file."""
    # open(..., "x") rather than mkstemp: the file gets the user's usual permissions (umask), not 0600
    tmp = out.with_name(f".{out.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ProjectError(f"{out}: cannot create the folder {out.parent} ({e.strerror or e})") from None
    try:
        f = open(tmp, "x", encoding="utf-8", newline="")  # noqa: SIM115 - closed in finish()
    except OSError as e:
        raise ProjectError(f"{out}: cannot write ({e.strerror or e})") from None

    def finish(ok: bool) -> None:
        try:
            f.close()  # flushes: on a full disk this is where the error comes
            if ok:
                os.replace(tmp, out)
        except OSError:
            ok = False
            raise
        finally:
            if not ok:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    return f, finish


def _csv_record(r: dict) -> dict:
    """A CSV row: a chat prompt and its replies as JSON message lists (one trl-chat row), a plain one as text."""
    if r["messages"] is None:
        return {"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]}
    return {"prompt": json.dumps(r["messages"], ensure_ascii=False),
            "chosen": json.dumps([{"role": "assistant", "content": r["chosen"]}], ensure_ascii=False),
            "rejected": json.dumps([{"role": "assistant", "content": r["rejected"]}], ensure_ascii=False)}


def export_file(project: Project, out: str | Path, fmt: str = "trl", split: str | None = None,
                progress: Progress | None = None) -> ExportReport:
    """Export resolved preferences (trl, trl-chat, csv) or every raw label (labels).

    `trl` writes plain strings and refuses projects whose prompts are chats (TRL cannot mix the two in
    one dataset): use `trl-chat`, which writes message lists and wraps a plain prompt as one user turn.
    `.json` files get a JSON array, anything else JSON lines; `csv` has prompt, chosen, rejected columns,
    holding JSON message lists on rows whose prompt is a chat (import reads both kinds back).
    `progress(done, total)` is called every few thousand rows and at the end."""
    if fmt not in EXPORT_FORMATS:
        raise ProjectError(f"format: unknown export format {fmt!r}; known: {', '.join(EXPORT_FORMATS)}")
    if split not in (None, "train", "eval"):
        raise ProjectError(f"split: expected train or eval, got {split!r}")
    out = Path(out)
    left_out: dict[str, int] = {}
    if fmt == "labels":
        records: Iterator[dict] = _label_rows(project, split)
        total = int(project._scalar(
            f"SELECT count(*) FROM labels l JOIN pairs p ON p.id = l.pair_id WHERE {visible_sql('p')}"
            + (" AND p.prompt_id IN (SELECT id FROM prompts WHERE split = ?)" if split else ""),
            (split,) if split else ()))
    else:
        resolved, left_out, total = _resolved_rows(project, split)
        if fmt == "trl":
            chats = project._scalar(
                f"SELECT count(*) FROM prompts pr WHERE messages IS NOT NULL AND {visible_sql('pr')}"
                + (" AND split = ?" if split else ""), (split,) if split else ())
            if chats:
                raise ProjectError(f"export --format trl: {chats} prompt(s) in this project are chats, which the "
                                   "standard format cannot hold; use --format trl-chat")
            records = ({"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]} for r in resolved)
        elif fmt == "trl-chat":
            records = ({"prompt": r["messages"] or [{"role": "user", "content": r["prompt"]}],
                        "chosen": [{"role": "assistant", "content": r["chosen"]}],
                        "rejected": [{"role": "assistant", "content": r["rejected"]}]} for r in resolved)
        else:
            records = (_csv_record(r) for r in resolved)
    if progress is not None:
        records = _reporting(records, total, progress)
    f, finish = _atomic_writer(out)
    n = 0
    try:
        if fmt == "csv":
            writer = csv.writer(f)
            writer.writerow(["prompt", "chosen", "rejected"])
            for rec in records:
                writer.writerow([rec["prompt"], rec["chosen"], rec["rejected"]])
                n += 1
        elif out.suffix.lower() == ".json":
            f.write("[")
            for rec in records:
                f.write(("," if n else "") + "\n" + json.dumps(rec, ensure_ascii=False))
                n += 1
            f.write("\n]\n")
        else:
            for rec in records:
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
                n += 1
        finish(True)
    except OSError as e:
        with contextlib.suppress(OSError):
            finish(False)
        raise ProjectError(f"{out}: cannot write ({e.strerror or e}); no file was written") from None
    except BaseException:
        with contextlib.suppress(OSError):
            finish(False)
        raise
    if progress is not None:
        progress(n, total)
    return ExportReport(str(out), fmt, n, left_out)


def _reporting(records: Iterator[dict], total: int, progress: Progress) -> Iterator[dict]:
    progress(0, total)
    for i, rec in enumerate(records, 1):
        yield rec
        if i % PROGRESS_EVERY == 0:
            progress(i, total)
