"""kill -9 at random moments while a child process enrols in a loop: after every kill the gallery opens,
passes SQLite's integrity_check, every identity has all its templates and photos (never some), no row is
orphaned, every sealed row opens, and the audit trail matches the identities exactly."""
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hsst.gallery.store import GalleryStore

CHILD = Path(__file__).with_name("enrol_loop.py")
KILLS = 25
TEMPLATES = 3  # per enrolment in enrol_loop.py


def _check(path: Path) -> int:
    """Invariants of the file as a fresh process finds it; returns the number of identities."""
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        counts = conn.execute(
            "SELECT i.id, (SELECT COUNT(*) FROM templates t WHERE t.identity_id = i.id), "
            "(SELECT COUNT(*) FROM photos p WHERE p.identity_id = i.id) FROM identities i").fetchall()
        half = [row for row in counts if row[1:] != (TEMPLATES, TEMPLATES)]
        assert not half, f"half-enrolled identities: {half[:5]}"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        orphans = conn.execute("SELECT COUNT(*) FROM templates t WHERE NOT EXISTS "
                               "(SELECT 1 FROM identities i WHERE i.id = t.identity_id)").fetchone()[0]
        assert orphans == 0
        enrols, removes = (conn.execute("SELECT COUNT(*) FROM audit WHERE action = ?", (a,)).fetchone()[0]
                           for a in ("enrol", "remove"))
        assert enrols - removes == len(counts)  # the audit line commits with its change, never apart
        return len(counts)
    finally:
        conn.close()


@pytest.mark.slow
def test_kill_9_mid_write_leaves_old_or_new_state(tmp_path, keys, real_faces):
    path = tmp_path / "gallery.db"
    GalleryStore.create(path, keys, real_faces.model_hash, dim=192).close()
    faces = tmp_path / "faces.npz"
    np.savez(faces, emb=real_faces.embeddings, crops=np.stack(real_faces.crops))
    rng = random.Random(15)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    last_version, sizes = 0, []
    t0 = time.monotonic()
    for kill in range(KILLS):
        child = subprocess.Popen([sys.executable, str(CHILD), str(path), str(tmp_path / "keys"), str(faces),
                                  real_faces.model_hash, f"k{kill}"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            ready = child.stdout.readline()
            assert ready.strip() == "ready", child.stderr.read()[-2000:]
            time.sleep(rng.uniform(0.02, 0.35))
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        assert child.returncode == -signal.SIGKILL, child.stderr.read()[-2000:]  # killed, not failed
        child.stdout.close()
        child.stderr.close()
        sizes.append(_check(path))
        if kill % 5 == 4 or kill == KILLS - 1:  # the gallery itself opens: key, model, every sealed row
            with GalleryStore.open(path, keys, real_faces.model_hash) as store:
                assert store.version >= last_version and len(store) == sizes[-1]
                last_version = store.version
    with GalleryStore.open(path, keys, real_faces.model_hash, search=False) as store:
        report = store.verify()
        assert report.ok, report.problems
        assert report.templates == TEMPLATES * sizes[-1]
    assert sizes[-1] > 0 and len(set(sizes)) > 1, sizes  # the child really wrote between kills
    print(f"{KILLS} kills in {time.monotonic() - t0:.1f} s; identities after each: {sizes}")
