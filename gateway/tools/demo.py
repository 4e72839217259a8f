"""The tutorial's demo tools, backed by a real SQLite database seeded with sample customers.

SQLite calls are short and run in a worker thread (``asyncio.to_thread``) by the caller.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from pathlib import Path
from typing import Any

SEED = [
    ("10001", "Jane Doe", "+15551230001", "gold"),
    ("10002", "John Smith", "+15551230002", "silver"),
    ("12345", "Maria Garcia", "+15551234567", "gold"),
    ("20002", "Wei Chen", "+15559870002", "bronze"),
    ("31415", "Amara Okafor", "+15553141592", "silver"),
]


class DemoDb:
    def __init__(self, path: str | Path = ":memory:") -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False)
        with self._lock, self._db:
            self._db.executescript("""
                CREATE TABLE IF NOT EXISTS customers(
                  account_id TEXT PRIMARY KEY, name TEXT, phone TEXT, tier TEXT);
                CREATE TABLE IF NOT EXISTS appointments(
                  id INTEGER PRIMARY KEY AUTOINCREMENT, account_id TEXT, date TEXT,
                  time TEXT, reason TEXT);
            """)
            self._db.executemany("INSERT OR IGNORE INTO customers VALUES (?,?,?,?)", SEED)

    def lookup_customer(self, args: dict[str, Any]) -> dict[str, Any]:
        phone = re.sub(r"\D", "", str(args.get("phone", "")))
        account = re.sub(r"\D", "", str(args.get("account_id", "")))
        if not phone and not account:
            return {"found": False, "error": "Give a phone number or an account id."}
        with self._lock:
            if account:
                row = self._db.execute("SELECT account_id, name, phone, tier FROM customers "
                                       "WHERE account_id = ?", (account,)).fetchone()
            else:
                row = self._db.execute(
                    "SELECT account_id, name, phone, tier FROM customers "
                    "WHERE replace(phone, '+', '') LIKE ?", (f"%{phone[-10:]}",)).fetchone()
        if row is None:
            return {"found": False, "message": "No customer matches that."}
        return {"found": True, "account_id": row[0], "name": row[1], "phone": row[2],
                "tier": row[3]}

    def schedule_appointment(self, args: dict[str, Any]) -> dict[str, Any]:
        date, time_ = str(args.get("date", "")), str(args.get("time", ""))
        account = str(args.get("account_id", "")) or None
        with self._lock, self._db:
            cur = self._db.execute(
                "INSERT INTO appointments(account_id, date, time, reason) VALUES (?,?,?,?)",
                (account, date, time_, str(args.get("reason", ""))))
        return {"status": "booked", "confirmation": f"A{cur.lastrowid:05d}", "date": date,
                "time": time_}

    def close(self) -> None:
        with self._lock:
            self._db.close()
