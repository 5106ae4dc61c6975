"""Labeling sessions: which windows label as which annotator, so a second window for one annotator is warned.

A session is a row (annotator, pid, host) made when a window starts labeling and removed when it stops; a
row whose process is gone (killed, crashed) is stale and removed by the next window that looks.
"""

from __future__ import annotations

import os

from studio.store.db import StoreBase, hostname, now_iso, pid_alive


class SessionsStore(StoreBase):
    def open_session(self, annotator: str) -> tuple[int | None, list[dict]]:
        """Register a labeling window for `annotator`. Returns its session id (None when the project is
        read-only) and the other live sessions of that annotator: (pid, host, started_at) dicts."""
        if self.read_only:
            return None, []
        host, pid = hostname(), os.getpid()
        with self._write() as c:
            stale = [(sid,) for sid, spid, shost in c.execute("SELECT id, pid, host FROM annotator_sessions")
                     if shost == host and not pid_alive(spid)]
            c.executemany("DELETE FROM annotator_sessions WHERE id = ?", stale)
            others = [{"pid": p, "host": h, "started_at": t} for p, h, t in c.execute(
                "SELECT pid, host, started_at FROM annotator_sessions WHERE annotator = ? ORDER BY id", (annotator,))]
            cur = c.execute("INSERT INTO annotator_sessions (annotator, pid, host, started_at) VALUES (?, ?, ?, ?)",
                            (annotator, pid, host, now_iso()))
            return int(cur.lastrowid), others

    def close_session(self, session_id: int | None) -> None:
        if session_id is None or self.read_only or self.closed:
            return
        with self._write() as c:
            c.execute("DELETE FROM annotator_sessions WHERE id = ?", (session_id,))
