
import nats
import psycopg

from bifrost_devtools.services import NatsServer


async def test_nats_has_jetstream(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    info = await nc.jetstream().account_info()
    await nc.close()
    assert info.limits is not None


def test_postgres_answers(postgres_url: str) -> None:
    with psycopg.connect(postgres_url.replace("+psycopg", "")) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
