from collections.abc import Generator

from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from . import config

engine = create_engine(config.SQLALCHEMY_DATABASE_URI)


def get_db() -> Generator[Session, None, None]:
    with Session(engine) as session:
        yield session
