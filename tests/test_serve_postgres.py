"""``podforge serve --database postgresql+asyncpg://…`` on a real PostgreSQL that the test starts itself.

Two workers share the server, as they would from two machines: serve's own and a second one on its own
work queue. An episode run created through the API (what the UI's Run button does) and a nightly run go
at once: the episode is held mid-step (its encoder waits for a file) until the whole nightly run has
finished, so "at once" is a fact the test observes, not a race it hopes to win.
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from serving import REPO, Served, create_run, flow_run, free_port, prefect_client, start_serve, stuck_encoder, wait_for, wait_until_final

from podforge.serve import DEFAULT_POOL


def postgres_program(name: str) -> str | None:
    """A PostgreSQL server program: on PATH, or where Debian's ``postgresql`` package puts it."""
    return shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)


INITDB, PG_CTL = postgres_program("initdb"), postgres_program("pg_ctl")
pytestmark = pytest.mark.skipif(not (INITDB and PG_CTL), reason="PostgreSQL server programs not installed (apt-get install postgresql)")


@pytest.fixture(scope="module")
def postgres() -> str:
    """A throwaway PostgreSQL cluster on a free port with a ``prefect`` database; its SQLAlchemy URL."""
    root = Path(tempfile.mkdtemp(prefix="podforge-pg-"))
    root.chmod(0o755)  # PostgreSQL refuses to run as root: as root, the cluster belongs to the `postgres` user
    as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    data, sockets = root / "data", root / "sockets"
    for folder in (data, sockets):
        folder.mkdir()
        if as_owner:
            shutil.chown(folder, "postgres", "postgres")
    port = free_port()
    subprocess.run([*as_owner, INITDB, "-D", str(data), "-U", "podforge", "--auth=trust", "-E", "UTF8", "--no-sync"], check=True, capture_output=True, timeout=600)
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run([*as_owner, PG_CTL, "-D", str(data), "-l", str(sockets / "server.log"), "-o", options, "-w", "-t", "600", "start"], check=True, capture_output=True, timeout=660)
    try:
        run_sql(port, "postgres", "CREATE DATABASE prefect")
        yield f"postgresql+asyncpg://podforge@127.0.0.1:{port}/prefect"
    finally:
        subprocess.run([*as_owner, PG_CTL, "-D", str(data), "-m", "fast", "-w", "-t", "120", "stop"], capture_output=True, timeout=180)
        shutil.rmtree(root, ignore_errors=True)


def run_sql(port: int, database: str, statement: str):
    import asyncpg

    async def fetch():
        connection = await asyncpg.connect(host="127.0.0.1", port=port, user="podforge", database=database)
        try:
            return await connection.fetchval(statement)
        finally:
            await connection.close()

    return asyncio.run(fetch())


def test_serve_on_postgresql_runs_an_episode_and_a_nightly_batch_at_once_on_two_workers(postgres: str, tmp_path_factory):
    home = tmp_path_factory.mktemp("pg-serve-home")
    served = start_serve(home, "--database", postgres, "--concurrency", "2")
    second_worker = None
    try:
        with prefect_client(served) as client:
            client.create_work_queue(name="second", work_pool_name=DEFAULT_POOL)
        env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
        env.update(PODFORGE_HOME=str(home), PREFECT_HOME=str(home / "prefect"), PREFECT_API_URL=served.api_url, PREFECT_WORKER_QUERY_SECONDS="2")
        with open(home / "second-worker.log", "wb") as log:
            command = [sys.executable, "-m", "prefect", "worker", "start", "--pool", DEFAULT_POOL, "--work-queue", "second", "--name", "second-worker"]
            second_worker = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)

        stuck, hold = stuck_encoder(home)
        script = "---\ntitle: From the UI on PostgreSQL\n---\nALEX: Two workers, one database.\n"
        episode = create_run(served, "episode/episode", {"script_text": script, "config": [str(served.config), str(stuck)]})
        inbox = home / "inbox"
        inbox.mkdir()
        (inbox / "tonight.md").write_text("---\ntitle: Tonight on PostgreSQL\n---\nSAM: The nightly batch.\n", encoding="utf-8")
        nightly = create_run(served, "nightly/nightly", {"inbox": str(inbox)}, work_queue_name="second")

        finished_nightly = wait_until_final(served, nightly.id)
        assert finished_nightly.state.is_completed(), finished_nightly.state.message
        assert flow_run(served, episode.id).state.is_running(), "the episode was running the whole time the nightly batch ran"
        hold.unlink()
        finished_episode = wait_until_final(served, episode.id)
        assert finished_episode.state.is_completed(), finished_episode.state.message

        assert (served.out / "from-the-ui-on-postgresql" / "manifest.json").is_file()
        assert (served.out / "tonight-on-postgresql" / "manifest.json").is_file()
        assert str(nightly.id) in wait_for(lambda: (home / "second-worker.log").read_text(errors="replace"), "the second worker's log"), "the second worker ran the nightly batch"
        assert str(episode.id) in (home / "logs" / "worker.log").read_text(errors="replace"), "serve's worker ran the episode"
        port = int(postgres.rsplit(":", 1)[1].split("/")[0])
        assert run_sql(port, "prefect", "SELECT count(*) FROM flow_run") >= 3, "the runs (nightly, its episode, the UI episode) are in PostgreSQL"
        assert not (home / "prefect" / "prefect.db").exists(), "no SQLite database was made"
    finally:
        if second_worker is not None:
            second_worker.terminate()
            second_worker.wait(timeout=60)
        assert served.stop() == 0
