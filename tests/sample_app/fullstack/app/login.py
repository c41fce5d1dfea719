"""Log in as the first superuser through the API and print the token as TOKEN=...: what a load
test's HEADERS reads (`python -m app.login`)."""

from fastapi.testclient import TestClient

from . import config
from .main import app

if __name__ == "__main__":
    answer = TestClient(app).post(
        "/api/v1/login/access-token",
        json={"username": config.FIRST_SUPERUSER, "password": config.FIRST_SUPERUSER_PASSWORD},
    )
    answer.raise_for_status()
    print("TOKEN=" + answer.json()["access_token"])
