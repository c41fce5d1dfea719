#!/bin/sh
# Log in as the first superuser and print the token as TOKEN=...: what --app's HEADERS reads.
set -eu
python - <<'PY'
from fastapi.testclient import TestClient

from app import config
from app.main import app

answer = TestClient(app).post(
    "/api/v1/login/access-token",
    json={"username": config.FIRST_SUPERUSER, "password": config.FIRST_SUPERUSER_PASSWORD},
)
answer.raise_for_status()
print("TOKEN=" + answer.json()["access_token"])
PY
