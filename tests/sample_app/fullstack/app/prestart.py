"""What the template runs before its server starts: the migrations not yet applied, then the first
superuser and some items. `python -m app.prestart`."""

from pathlib import Path

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from . import config
from .db import engine
from .models import Item, User
from .security import get_password_hash

MIGRATIONS = Path(__file__).parent / "migrations"


def migrate() -> None:
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE IF NOT EXISTS schema_version (name TEXT PRIMARY KEY)"))
        applied = set(connection.scalars(text("SELECT name FROM schema_version")))
        for migration in sorted(MIGRATIONS.glob("*.sql")):
            if migration.name not in applied:
                connection.exec_driver_sql(migration.read_text())
                connection.execute(text("INSERT INTO schema_version VALUES (:name)"), {"name": migration.name})
                print(f"applied {migration.name}")


def seed() -> None:
    with Session(engine) as session:
        if session.scalar(select(User).where(User.email == config.FIRST_SUPERUSER)) is None:
            user = User(
                email=config.FIRST_SUPERUSER, hashed_password=get_password_hash(config.FIRST_SUPERUSER_PASSWORD)
            )
            session.add(user)
            session.flush()
            session.add_all(Item(title=f"item {i}", owner_id=user.id) for i in range(20))
            session.commit()


if __name__ == "__main__":
    migrate()
    seed()
