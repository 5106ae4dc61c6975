"""Prompts, responses, pairs, labels and annotators: what is labeled, by whom, and the queues over it.

`PairFilter` is the one condition builder for "which pairs": the labeling queues and the Data view's
filters are both expressed with it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import EllipsisType
from typing import Any

from studio.core import stats
from studio.core.types import Choice, Flag, Label, LabelState, Pair, Preference, Prompt, Response, Strength
from studio.store.db import ProjectError, StoreBase, content_hash, messages_to_text, now_iso, prompt_hash
from studio.store.imports import unpublished_sql, visible_count_sql, visible_sql
from studio.store.schema import person_sql

QUEUES = ("mine", "informative", "needs_more", "disagreements", "flagged", "all")
STATES = ("any", "unlabeled", "labeled", "needs_more")
AGREEMENTS = ("any", "single", "agree", "disagree")

# people's non-skip current labels of a pair, distinct verdicts: 1 = agreement, >1 = disagreement (an imported
# label is the dataset's verdict, not a second rater's: agreement is between people, as in the statistics)
_PEOPLE = f"JOIN annotators a ON a.id = l.annotator_id WHERE l.state = 'current' AND l.choice != 'skip' " \
          f"AND {person_sql('a.name')}"
_DISTINCT = f"(SELECT count(DISTINCT l.choice) FROM labels l {_PEOPLE} AND l.pair_id = p.id)"


class LabelConflict(ProjectError):
    """The annotator's label on a pair changed after the caller last read it (another window labeling as the
    same annotator): nothing was saved, and `current` is the label in force now (None: it was undone)."""

    def __init__(self, message: str, current: Label | None):
        super().__init__(message)
        self.current = current


_OPEN_FLAGS = "(SELECT pair_id FROM pair_flags WHERE cleared_at IS NULL)"

# The Data view's sortable columns: SQL over `pairs p` joined with its prompt `pr` and responses `ra`, `rb`.
SORT_KEYS = {
    "id": "p.id",
    "split": "pr.split",
    "source": "p.source",
    "a_chars": "length(ra.text)",
    "b_chars": "length(rb.text)",
    "labels": "(SELECT count(*) FROM labels l WHERE l.pair_id = p.id AND l.state = 'current')",
    # people's verdicts only (as the "disagree" filter): 0 when every non-skip verdict agrees, up to 1 - 1/k when
    # k verdicts split evenly; NULL without one
    "disagreement": ("(SELECT 1.0 - max(n) * 1.0 / sum(n) FROM (SELECT count(*) AS n FROM labels l "
                     f"{_PEOPLE} AND l.pair_id = p.id GROUP BY l.choice))"),
    "seconds": "(SELECT avg(l.seconds) FROM labels l WHERE l.pair_id = p.id AND l.state = 'current')",
    "flags": "(SELECT count(*) FROM pair_flags f WHERE f.pair_id = p.id AND f.cleared_at IS NULL)",
}
_PAIR_ROW_SQL = ("SELECT p.id, pr.split, p.source, substr(pr.text, 1, 300), length(ra.text), length(rb.text) "
                 "FROM pairs p JOIN prompts pr ON pr.id = p.prompt_id "
                 "JOIN responses ra ON ra.id = p.response_a_id JOIN responses rb ON rb.id = p.response_b_id ")


@dataclass(frozen=True)
class PairFilter:
    """Which pairs to show: a labeling queue, the Data view's filters, or both.

    `not_labeled_by` keeps the pairs an annotator (by id) has no current label on; `labeled_by` those an
    annotator (by name) has one on. `state` and `agreement` count people's non-skip labels (n_labels):
    an imported label is the dataset's verdict, so a pair with only that is unlabeled and needs labels.
    `flagged` keeps the pairs with an open flag for review. Pairs of an import still being written are
    never matched."""

    state: str = "any"
    agreement: str = "any"
    not_labeled_by: int | None = None
    labeled_by: str | None = None
    split: str | None = None
    source: str | None = None
    search: str | None = None
    flagged: bool = False

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ProjectError(f"state: unknown filter {self.state!r}; known: {', '.join(STATES)}")
        if self.agreement not in AGREEMENTS:
            raise ProjectError(f"agreement: unknown filter {self.agreement!r}; known: {', '.join(AGREEMENTS)}")

    @classmethod
    def queue(cls, queue: str, annotator_id: int, split: str | None = None, source: str | None = None,
              search: str | None = None) -> PairFilter:
        """A labeling queue: 'mine' (not labeled by me), 'informative' (the same pairs, most informative first:
        see store.informative), 'needs_more' (labeled by others, fewer labels than the overlap target, not by
        me), 'disagreements', 'flagged' (open flags for review), 'all'."""
        if queue not in QUEUES:
            raise ProjectError(f"queue: unknown queue {queue!r}; known: {', '.join(QUEUES)}")
        mine = annotator_id if queue in ("mine", "informative", "needs_more") else None
        return cls(state="needs_more" if queue == "needs_more" else "any",
                   agreement="disagree" if queue == "disagreements" else "any",
                   not_labeled_by=mine, split=split, source=source, search=search, flagged=queue == "flagged")

    def sql(self, overlap_target: int, n_labels: int | None = None, scan: bool = False) -> tuple[str, list[Any]]:
        """The WHERE clause over `pairs p`, with its parameters.

        `n_labels` narrows 'needs_more' and 'disagree' to pairs with exactly that many people's labels (an
        equality the (n_labels, id) index serves in id order); `scan` picks forms that are fast when walking pairs in id
        order for the first match (or a page) rather than counting them all."""
        where: list[str] = [visible_sql("p")]
        params: list[Any] = []
        if self.state == "unlabeled":
            where.append("p.n_labels = 0")
        elif self.state == "labeled":
            where.append("p.n_labels > 0")
        elif self.state == "needs_more" and n_labels is not None:
            where.append("p.n_labels = ?")
            params.append(n_labels)
        elif self.state == "needs_more":
            where.append("p.n_labels >= 1 AND p.n_labels < ?")
            params.append(overlap_target)
        if self.not_labeled_by is not None:
            where.append("NOT EXISTS (SELECT 1 FROM labels l WHERE l.pair_id = p.id AND l.annotator_id = ? "
                         "AND l.state = 'current')")
            params.append(self.not_labeled_by)
        if self.labeled_by:
            where.append("EXISTS (SELECT 1 FROM labels l JOIN annotators a ON a.id = l.annotator_id "
                         "WHERE l.pair_id = p.id AND l.state = 'current' AND a.name = ?)")
            params.append(self.labeled_by)
        if self.agreement == "single":
            where.append("p.n_labels = 1")
        elif self.agreement == "agree":
            where.append(f"p.n_labels >= 2 AND {_DISTINCT} = 1")
        elif self.agreement == "disagree" and n_labels is not None:
            where.append(f"p.n_labels = ? AND {_DISTINCT} > 1")
            params.append(n_labels)
        elif self.agreement == "disagree" and scan:
            # per pair, through labels_by_pair; `+` keeps the planner walking pairs in id order
            where.append(f"+p.n_labels >= 2 AND {_DISTINCT} > 1")
        elif self.agreement == "disagree":
            where.append(f"p.n_labels >= 2 AND p.id IN (SELECT l.pair_id FROM labels l {_PEOPLE} "
                         "GROUP BY l.pair_id HAVING count(DISTINCT l.choice) > 1)")
        if self.flagged:
            where.append(f"p.id IN {_OPEN_FLAGS}")
        if self.split:
            where.append("p.prompt_id IN (SELECT id FROM prompts WHERE split = ?)")
            params.append(self.split)
        if self.source:
            where.append("p.source = ?")
            params.append(self.source)
        if self.search:
            like = f"%{self.search}%"
            where.append("(p.prompt_id IN (SELECT id FROM prompts WHERE text LIKE ?) OR EXISTS (SELECT 1 FROM "
                         "responses r WHERE r.id IN (p.response_a_id, p.response_b_id) AND r.text LIKE ?))")
            params += [like, like]
        return " AND ".join(where), params


@dataclass(frozen=True)
class PairRow:
    """One row of the Data view's table: a pair with its lengths, current votes (an imported verdict
    included), the mean seconds its current labels took (None without one), its open flags, and the votes of
    people alone, which agreement is judged on (as the "disagree" filter and the statistics judge it)."""

    id: int
    split: str
    source: str
    prompt: str
    a_chars: int
    b_chars: int
    votes: dict[str, int]
    seconds: float | None = None
    flags: int = 0
    people_votes: dict[str, int] = field(default_factory=dict)

    @property
    def decided_by_people(self) -> int:
        """People's non-skip verdicts on the pair."""
        return sum(n for choice, n in self.people_votes.items() if choice != Choice.SKIP)

    @property
    def disagreement(self) -> float | None:
        """0 when people's non-skip verdicts agree, more the more they split (SORT_KEYS' rule); None without
        one (an imported verdict alone is the dataset's, not an agreement)."""
        decided = [n for choice, n in self.people_votes.items() if choice != Choice.SKIP]
        return 1.0 - max(decided) / sum(decided) if decided else None


class PairsStore(StoreBase):
    """The labeling half of a project."""

    # ------------------------------------------------------------------ annotators

    def annotator_id(self, name: str) -> int:
        """The id of an annotator, created on first use."""
        name = name.strip()
        if not name:
            raise ProjectError("annotator: the name is empty")
        found = self._scalar("SELECT id FROM annotators WHERE name = ?", (name,))
        if found is not None:
            return int(found)
        with self._write() as c:
            c.execute("INSERT OR IGNORE INTO annotators (name, created_at) VALUES (?, ?)", (name, now_iso()))
        return int(self._scalar("SELECT id FROM annotators WHERE name = ?", (name,)))

    def _known_annotator_id(self, name: str) -> int:
        """The id of an annotator for reading, without creating one: 0 (no annotator has it) when unknown,
        so reading a project (read-only, too) never writes."""
        return int(self._scalar("SELECT id FROM annotators WHERE name = ?", (name.strip(),)) or 0)

    def annotators(self) -> list[str]:
        return [r[0] for r in self._conn.execute("SELECT name FROM annotators ORDER BY name")]

    # ------------------------------------------------------------------ prompts, responses, pairs

    def add_prompt(self, text: str | None = None, messages: Sequence[dict] | None = None,
                   split: str = "train", source: str | None = None) -> int:
        """Add a prompt (plain text or a chat message list), or return the id of the identical one."""
        if messages is not None:
            messages = [{"role": m["role"], "content": m["content"]} for m in messages]
            text = messages_to_text(messages)
        if not text:
            raise ProjectError("prompt: the text is empty")
        h = prompt_hash(text, messages)
        with self._write() as c:
            c.execute(
                "INSERT OR IGNORE INTO prompts (text, messages, split, source, hash, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (text, json.dumps(messages, ensure_ascii=False) if messages is not None else None,
                 split, source, h, now_iso()))
            # the same prompt may have come in with an import still being written: it is ours now, and
            # stays when that import fails
            c.execute(f"UPDATE prompts AS x SET import_id = NULL WHERE hash = ? AND {unpublished_sql('x')}", (h,))
        return int(self._scalar("SELECT id FROM prompts WHERE hash = ?", (h,)))

    def add_response(self, prompt_id: int, text: str, model: str | None = None) -> int:
        if not text:
            raise ProjectError("response: the text is empty")
        h = content_hash(text)
        with self._write() as c:
            c.execute("INSERT OR IGNORE INTO responses (prompt_id, text, model, hash, created_at) "
                      "VALUES (?, ?, ?, ?, ?)", (prompt_id, text, model, h, now_iso()))
            c.execute(f"UPDATE responses AS x SET import_id = NULL WHERE prompt_id = ? AND hash = ? "
                      f"AND {unpublished_sql('x')}", (prompt_id, h))
        return int(self._scalar("SELECT id FROM responses WHERE prompt_id = ? AND hash = ?", (prompt_id, h)))

    def add_pair(self, prompt_id: int, response_a_id: int, response_b_id: int, source: str | None = None,
                 meta: dict | None = None) -> int | None:
        """Add a pair; returns None when the same two responses to this prompt are already a pair."""
        if response_a_id == response_b_id:
            raise ProjectError("pair: both sides are the same response")
        with self._write() as c:
            cur = c.execute(
                "INSERT OR IGNORE INTO pairs (prompt_id, response_a_id, response_b_id, source, meta, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (prompt_id, response_a_id, response_b_id, source,
                 json.dumps(meta) if meta else None, now_iso()))
            return int(cur.lastrowid) if cur.rowcount else None

    def _prompt_from_row(self, r: dict) -> Prompt:
        return Prompt(id=r["id"], text=r["text"], messages=json.loads(r["messages"]) if r["messages"] else None,
                      split=r["split"], source=r["source"])

    def prompt(self, prompt_id: int) -> Prompt:
        rows = self._query("SELECT * FROM prompts WHERE id = ?", (prompt_id,))
        if not rows:
            raise ProjectError(f"prompt {prompt_id}: no such prompt")
        return self._prompt_from_row(rows[0])

    def response(self, response_id: int) -> Response:
        rows = self._query("SELECT id, prompt_id, text, model FROM responses WHERE id = ?", (response_id,))
        if not rows:
            raise ProjectError(f"response {response_id}: no such response")
        return Response(**rows[0])

    def pair(self, pair_id: int) -> Pair:
        rows = self._query("SELECT * FROM pairs WHERE id = ?", (pair_id,))
        if not rows:
            raise ProjectError(f"pair {pair_id}: no such pair")
        r = rows[0]
        return Pair(id=r["id"], prompt=self.prompt(r["prompt_id"]), a=self.response(r["response_a_id"]),
                    b=self.response(r["response_b_id"]), source=r["source"],
                    meta=json.loads(r["meta"]) if r["meta"] else {})

    def pair_count(self) -> int:
        return int(self._scalar(f"SELECT {visible_count_sql('pairs', 'p')}"))

    def pair_ids(self) -> list[int]:
        """Every pair's id, in order."""
        return [r[0] for r in self._conn.execute(f"SELECT id FROM pairs p WHERE {visible_sql('p')} ORDER BY id")]

    def labeled_pair_count(self) -> int:
        """Pairs with at least one current non-skip label by a person (imported labels are the dataset's
        verdict: a freshly imported labeled dataset is not 'labeled' until people label it)."""
        return int(self._scalar(f"SELECT {visible_count_sql('pairs', 'p', 'n_labels > 0')}"))

    def mean_text_chars(self) -> tuple[float, float]:
        """Mean characters of a labeled pair's prompt and of one of its responses (a run's size estimate). A
        pair counts with any current verdict, an imported one too: a run trains on those (n_labels counts
        people's labels only, so a freshly imported labeled dataset would have no labeled pair)."""
        row = self._conn.execute(
            "SELECT avg(length(pr.text)), avg((length(ra.text) + length(rb.text)) / 2.0) FROM pairs p "
            "JOIN prompts pr ON pr.id = p.prompt_id JOIN responses ra ON ra.id = p.response_a_id "
            "JOIN responses rb ON rb.id = p.response_b_id WHERE p.id IN (SELECT pair_id FROM labels "
            f"WHERE state = 'current' AND choice != 'skip') AND {visible_sql('p')}").fetchone()
        return float(row[0] or 0.0), float(row[1] or 0.0)

    def sources(self) -> list[str]:
        """The distinct sources of the pairs (the labeling view's source filter)."""
        return [r[0] for r in self._conn.execute(
            f"SELECT DISTINCT source FROM pairs p WHERE source IS NOT NULL AND {visible_sql('p')} ORDER BY source")]

    # ------------------------------------------------------------------ labeling

    def shown_left(self, pair_id: int, annotator: str) -> str:
        """Which response ('a' or 'b') this annotator sees on the left: random per annotator and pair,
        but stable across restarts (a keyed hash, so nothing has to be stored before labeling)."""
        digest = hashlib.blake2b(f"{annotator}\x00{pair_id}".encode(), digest_size=1,
                                 key=(self.setting("salt") or "").encode()).digest()
        return "a" if digest[0] & 1 else "b"

    def record_label(self, pair_id: int, annotator: str, choice: Choice | str, shown_left: str,
                     strength: Strength | str | None = None, rationale: str | None = None,
                     seconds: float | None = None, expected_current: int | EllipsisType | None = ...,
                     wait: bool = True) -> int:
        """Commit a label; an earlier label by the same annotator on this pair becomes 'replaced'.

        `expected_current` is the id of the annotator's current label on the pair as the caller last saw
        it (None: no label); when the label in force differs (another window labeling as the same
        annotator), LabelConflict is raised and nothing is saved, so labels never replace each other
        unseen. `wait=False` raises ProjectBusy at once instead of waiting for another writer."""
        choice = Choice(choice)
        strength = Strength(strength).value if strength else None
        if shown_left not in ("a", "b"):
            raise ProjectError(f"shown_left: expected 'a' or 'b', got {shown_left!r}")
        with self._write(wait=wait) as c:
            aid = self.annotator_id(annotator)
            if c.execute("SELECT 1 FROM pairs WHERE id = ?", (pair_id,)).fetchone() is None:
                raise ProjectError(f"pair {pair_id}: no such pair")
            prev = c.execute("SELECT id FROM labels WHERE pair_id = ? AND annotator_id = ? AND state = 'current'",
                             (pair_id, aid)).fetchone()
            if expected_current is not ... and (prev[0] if prev else None) != expected_current:
                now = self.label(prev[0]) if prev else None
                what = f"{now.choice.value} (label {now.id}, {now.created_at})" if now else "no label (undone)"
                raise LabelConflict(f"pair {pair_id}: {annotator}'s label changed meanwhile (now {what}), "
                                    "probably in another window; nothing was saved", now)
            ts = now_iso()
            if prev:
                c.execute("UPDATE labels SET state = 'replaced', ended_at = ? WHERE id = ?", (ts, prev[0]))
            cur = c.execute(
                "INSERT INTO labels (pair_id, annotator_id, choice, strength, rationale, shown_left, seconds, "
                "created_at, state, replaces_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'current', ?)",
                (pair_id, aid, choice.value, strength, rationale or None, shown_left, seconds, ts,
                 prev[0] if prev else None))
            return int(cur.lastrowid)

    def undo_label(self, label_id: int, wait: bool = True) -> int:
        """Undo a current label: it becomes 'undone' and the label it replaced (if any) is current
        again. Returns the pair id, so the caller can show that pair again."""
        with self._write(wait=wait) as c:
            row = c.execute("SELECT pair_id, state, replaces_id FROM labels WHERE id = ?", (label_id,)).fetchone()
            if row is None:
                raise ProjectError(f"label {label_id}: no such label")
            pair_id, state, replaces = row
            if state != LabelState.CURRENT.value:
                raise ProjectError(f"label {label_id}: is {state}, only a current label can be undone")
            c.execute("UPDATE labels SET state = 'undone', ended_at = ? WHERE id = ?", (now_iso(), label_id))
            if replaces is not None:
                c.execute("UPDATE labels SET state = 'current', ended_at = NULL WHERE id = ?", (replaces,))
        return int(pair_id)

    def last_label_id(self, annotator: str) -> int | None:
        """The annotator's most recent label that is still current."""
        aid = self._known_annotator_id(annotator)
        return self._scalar("SELECT id FROM labels WHERE annotator_id = ? AND state = 'current' "
                            "ORDER BY id DESC LIMIT 1", (aid,))

    def label(self, label_id: int) -> Label:
        rows = self._query("SELECT l.*, a.name AS annotator FROM labels l JOIN annotators a "
                           "ON a.id = l.annotator_id WHERE l.id = ?", (label_id,))
        if not rows:
            raise ProjectError(f"label {label_id}: no such label")
        return self._label_from_row(rows[0])

    def label_count(self, annotator: str) -> int:
        """The annotator's labels in force (current), skips included."""
        aid = self._known_annotator_id(annotator)
        return int(self._scalar("SELECT count(*) FROM labels WHERE annotator_id = ? AND state = 'current'", (aid,)))

    def label_count_since(self, annotator: str, since: str) -> int:
        """The annotator's labels in force made at or after `since` (an ISO time in UTC, as stored): "my
        labels today". Only this annotator's own labels count, never an import's."""
        aid = self._known_annotator_id(annotator)
        # ids grow with time: walk back from the newest label to the last one before `since` (only the
        # recent labels are read), then count the current ones after it through the (annotator, id) index
        before = self._scalar("SELECT id FROM labels WHERE annotator_id = ? AND created_at < ? ORDER BY id DESC "
                              "LIMIT 1", (aid, since)) or 0
        return int(self._scalar("SELECT count(*) FROM labels WHERE annotator_id = ? AND id > ? "
                                "AND state = 'current'", (aid, before)))

    def recent_labels(self, annotator: str, limit: int = 5) -> list[Label]:
        """The annotator's latest labels still in force, newest first (the labeling view's recent strip)."""
        aid = self._known_annotator_id(annotator)
        rows = self._query("SELECT l.*, a.name AS annotator FROM labels l JOIN annotators a ON a.id = l.annotator_id "
                           "WHERE l.annotator_id = ? AND l.state = 'current' ORDER BY l.id DESC LIMIT ?",
                           (aid, int(limit)))
        return [self._label_from_row(r) for r in rows]

    def _label_from_row(self, r: dict) -> Label:
        return Label(id=r["id"], pair_id=r["pair_id"], annotator=r["annotator"], choice=Choice(r["choice"]),
                     strength=Strength(r["strength"]) if r["strength"] else None, rationale=r["rationale"],
                     shown_left=r["shown_left"], seconds=r["seconds"], created_at=r["created_at"],
                     state=LabelState(r["state"]))

    def label_history(self, pair_id: int) -> list[Label]:
        """Every label ever made on the pair, oldest first, including replaced and undone ones."""
        rows = self._query("SELECT l.*, a.name AS annotator FROM labels l JOIN annotators a "
                           "ON a.id = l.annotator_id WHERE l.pair_id = ? ORDER BY l.id", (pair_id,))
        return [self._label_from_row(r) for r in rows]

    def current_labels(self, pair_id: int) -> list[Label]:
        return [lab for lab in self.label_history(pair_id) if lab.state is LabelState.CURRENT]

    def current_label(self, pair_id: int, annotator: str) -> Label | None:
        for lab in self.current_labels(pair_id):
            if lab.annotator == annotator:
                return lab
        return None

    # ------------------------------------------------------------------ flags for review

    def flag_pair(self, pair_id: int, annotator: str, note: str | None = None) -> int:
        """Flag a pair for review with an optional note; the annotator's open flag on it is replaced (its note
        updated). Returns the flag's id."""
        with self._write() as c:
            aid = self.annotator_id(annotator)
            # a pair of an import still being written is not there yet (and goes if the import fails)
            if c.execute(f"SELECT 1 FROM pairs p WHERE id = ? AND {visible_sql('p')}", (pair_id,)).fetchone() is None:
                raise ProjectError(f"pair {pair_id}: no such pair")
            ts = now_iso()
            c.execute("UPDATE pair_flags SET cleared_at = ? WHERE pair_id = ? AND annotator_id = ? "
                      "AND cleared_at IS NULL", (ts, pair_id, aid))
            cur = c.execute("INSERT INTO pair_flags (pair_id, annotator_id, note, created_at) VALUES (?, ?, ?, ?)",
                            (pair_id, aid, (note or "").strip() or None, ts))
            return int(cur.lastrowid)

    def clear_flags(self, pair_id: int, annotator: str | None = None) -> int:
        """Clear the open flags on a pair (only the annotator's when given); returns how many were cleared."""
        sql = "UPDATE pair_flags SET cleared_at = ? WHERE pair_id = ? AND cleared_at IS NULL"
        params: list[Any] = [now_iso(), pair_id]
        if annotator is not None:
            sql += " AND annotator_id = ?"
            params.append(self.annotator_id(annotator))
        with self._write() as c:
            return c.execute(sql, params).rowcount

    def flags(self, pair_id: int, include_cleared: bool = False) -> list[Flag]:
        """The flags on a pair, oldest first: the open ones, or every one ever made."""
        rows = self._query("SELECT f.*, a.name AS annotator FROM pair_flags f JOIN annotators a "
                           "ON a.id = f.annotator_id WHERE f.pair_id = ?"
                           + ("" if include_cleared else " AND f.cleared_at IS NULL") + " ORDER BY f.id", (pair_id,))
        return [Flag(r["id"], r["pair_id"], r["annotator"], r["note"], r["created_at"], r["cleared_at"]) for r in rows]

    def flagged_pair_count(self) -> int:
        """Pairs with at least one open flag."""
        return int(self._scalar(f"SELECT count(*) FROM pairs p WHERE p.id IN {_OPEN_FLAGS} AND {visible_sql('p')}"))

    # ------------------------------------------------------------------ queues and filters

    def next_pair(self, annotator: str, queue: str = "mine", after: int | None = None, split: str | None = None,
                  source: str | None = None, search: str | None = None) -> int | None:
        """The id of the next pair in a queue after pair `after` (wrapping around), or None when empty.

        Without `after`, the scan starts after the annotator's latest label, so it never rescans the
        pairs already done (fast at a million pairs)."""
        aid = self._known_annotator_id(annotator)
        flt = PairFilter.queue(queue, aid, split, source, search)
        if queue == "informative":  # in the ranking's order, from the top (see store.informative)
            from studio.store.informative import next_informative

            return next_informative(self, flt, after)
        if after is None:
            after = self._scalar("SELECT pair_id FROM labels WHERE annotator_id = ? ORDER BY id DESC LIMIT 1",
                                 (aid,)) or 0
        if flt.state == "needs_more":
            # One indexed query per label count below the target: a range on n_labels would make SQLite
            # sort every matching pair to find the first by id (tens of ms at a million pairs).
            conds = [flt.sql(self.overlap_target, n_labels=n) for n in range(1, self.overlap_target)]
        elif flt.agreement == "disagree":
            # Pairs two or more people labeled are few and far apart: the same indexed query per label count
            # steps over the rest instead of walking every pair.
            most = int(self._scalar("SELECT max(n_labels) FROM pairs") or 0)
            conds = [flt.sql(self.overlap_target, n_labels=n) for n in range(2, most + 1)]
        else:
            conds = [flt.sql(self.overlap_target, scan=True)]
        for op in (">", "<="):
            if op == "<=" and not after:
                break
            hits = [self._scalar(f"SELECT p.id FROM pairs p WHERE p.id {op} ? AND {cond} ORDER BY p.id LIMIT 1",
                                 [after, *params]) for cond, params in conds]
            hits = [h for h in hits if h is not None]
            if hits:
                return int(min(hits))
        return None

    def queue_count(self, annotator: str, queue: str = "mine", split: str | None = None,
                    source: str | None = None, search: str | None = None) -> int:
        return self.count_pairs(PairFilter.queue(queue, self._known_annotator_id(annotator), split, source, search))

    def count_pairs(self, flt: PairFilter) -> int:
        cond, params = flt.sql(self.overlap_target)
        return int(self._scalar(f"SELECT count(*) FROM pairs p WHERE {cond}", params))

    def pair_page(self, flt: PairFilter, after_id: int = 0, limit: int = 200) -> list[PairRow]:
        """Pairs matching the filter with id > after_id, in id order (keyset paging: the millionth row costs
        what the first does), with lengths and current votes."""
        cond, params = flt.sql(self.overlap_target, scan=True)
        page = self._conn.execute(f"{_PAIR_ROW_SQL} WHERE p.id > ? AND {cond} ORDER BY p.id LIMIT ?",
                                  [after_id, *params, limit]).fetchall()
        return self._pair_rows(page)

    def pair_order(self, flt: PairFilter, sort: str, descending: bool = False) -> list[int]:
        """Every matching pair's id, ordered by a SORT_KEYS column (then by id). Sorting reads every matching
        pair, so the Data view pages through this list with `pair_rows` rather than sorting each page. Ties
        keep id order; pairs without a value (no label, so no disagreement or time) come last either way."""
        if sort not in SORT_KEYS:
            raise ProjectError(f"sort: unknown column {sort!r}; known: {', '.join(SORT_KEYS)}")
        cond, params = flt.sql(self.overlap_target)
        way = "DESC" if descending else "ASC"
        key = SORT_KEYS[sort]
        rows = self._conn.execute(
            "SELECT p.id FROM pairs p JOIN prompts pr ON pr.id = p.prompt_id "
            "JOIN responses ra ON ra.id = p.response_a_id JOIN responses rb ON rb.id = p.response_b_id "
            f"WHERE {cond} ORDER BY {key} IS NULL, {key} {way}, p.id", params)
        return [r[0] for r in rows]

    def pair_rows(self, ids: Sequence[int]) -> list[PairRow]:
        """The Data view's rows of these pairs, in the order given (a page of a sorted order)."""
        if not ids:
            return []
        marks = ", ".join("?" * len(ids))
        found = {r[0]: r for r in self._conn.execute(f"{_PAIR_ROW_SQL} WHERE p.id IN ({marks})", list(ids))}
        return self._pair_rows([found[i] for i in ids if i in found])

    def _pair_rows(self, page: list[tuple]) -> list[PairRow]:
        """Rows with their current votes, mean seconds and open flags, three queries for the whole page."""
        votes: dict[int, dict[str, int]] = {}
        people: dict[int, dict[str, int]] = {}
        seconds: dict[int, float] = {}
        flags: dict[int, int] = {}
        if page:
            ids = [r[0] for r in page]
            marks = ", ".join("?" * len(page))
            for pid, choice, n, by_people in self._conn.execute(
                    f"SELECT l.pair_id, l.choice, count(*), sum({person_sql('a.name')}) FROM labels l "
                    "JOIN annotators a ON a.id = l.annotator_id "
                    f"WHERE l.state = 'current' AND l.pair_id IN ({marks}) GROUP BY l.pair_id, l.choice", ids):
                votes.setdefault(pid, {})[choice] = n
                if by_people:
                    people.setdefault(pid, {})[choice] = by_people
            seconds = dict(self._conn.execute(
                f"SELECT pair_id, avg(seconds) FROM labels WHERE state = 'current' AND seconds IS NOT NULL "
                f"AND pair_id IN ({marks}) GROUP BY pair_id", ids).fetchall())
            flags = dict(self._conn.execute(
                f"SELECT pair_id, count(*) FROM pair_flags WHERE cleared_at IS NULL AND pair_id IN ({marks}) "
                "GROUP BY pair_id", ids).fetchall())
        return [PairRow(pid, split, source or "", prompt, la, lb, votes.get(pid, {}), seconds.get(pid),
                        flags.get(pid, 0), people.get(pid, {}))
                for pid, split, source, prompt, la, lb in page]

    # ------------------------------------------------------------------ resolution

    def vote_rows(self, split: str | None = None) -> list[tuple]:
        """Per labeled pair: (pair_id, prompt_id, a_id, b_id, split, n_a, n_b, n_tie, n_both_bad, n_skip)."""
        sql = (
            "SELECT p.id, p.prompt_id, p.response_a_id, p.response_b_id, pr.split, "
            "sum(l.choice = 'a'), sum(l.choice = 'b'), sum(l.choice = 'tie'), sum(l.choice = 'both_bad'), "
            "sum(l.choice = 'skip') "
            "FROM labels l JOIN pairs p ON p.id = l.pair_id JOIN prompts pr ON pr.id = p.prompt_id "
            f"WHERE l.state = 'current' AND {visible_sql('p')} " + ("AND pr.split = ? " if split else "") +
            "GROUP BY p.id ORDER BY p.id")
        return self._conn.execute(sql, (split,) if split else ()).fetchall()

    def resolve(self, split: str | None = None) -> tuple[list[Preference], dict[str, int]]:
        """Majority across annotators on each labeled pair (`core.stats.resolve_votes`). Returns the
        preferences and counts of what was left out: tie, both_bad, no_majority (a split vote), skipped
        (only skips)."""
        rows = self.vote_rows(split)
        codes = stats.resolve_votes([r[5:9] for r in rows])
        prefs: list[Preference] = []
        left_out = {"tie": 0, "both_bad": 0, "no_majority": 0, "skipped": 0}
        names = {stats.NO_VOTES: "skipped", stats.SPLIT_VOTE: "no_majority", 2: "tie", 3: "both_bad"}
        for (pid, prompt_id, a_id, b_id, sp, na, nb, nt, nbb, _ns), code in zip(rows, codes.tolist(), strict=True):
            if code in names:
                left_out[names[code]] += 1
                continue
            chosen, rejected = (a_id, b_id) if code == 0 else (b_id, a_id)
            prefs.append(Preference(pid, prompt_id, chosen, rejected, sp, max(na, nb), na + nb + nt + nbb))
        return prefs, left_out

    def resolved_preferences(self, split: str | None = None) -> list[Preference]:
        return self.resolve(split)[0]
