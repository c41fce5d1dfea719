"""A small shop API, written as an app is, not for this benchmark: what `--app` diagnoses in the tests.

Run it as its users would: `uvicorn shop:app` from this directory.
"""

import hashlib
import os
import time

import httpx
from fastapi import Depends, FastAPI
from pydantic import BaseModel
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

app = FastAPI(title="shop")

# Where its orders are kept and where stock is asked: set by the deployment (a .env file, say).
DATABASE_URL = os.environ.get("DATABASE_URL", "")
INVENTORY_URL = os.environ.get("INVENTORY_URL", "http://127.0.0.1:9000/stock")
engine = create_engine(DATABASE_URL.replace("postgresql://", "postgresql+psycopg://", 1)) if DATABASE_URL else None
inventory = httpx.AsyncClient(limits=httpx.Limits(max_connections=10), timeout=30)


class Item(BaseModel):
    id: int
    name: str
    price_cents: int
    tags: list[str]


CATALOGUE = [Item(id=i, name=f"item {i}", price_cents=100 + i, tags=["a", "b"]) for i in range(2000)]


@app.get("/health")
async def health():
    return {"ok": True}


@app.get("/catalogue")
async def catalogue() -> list[Item]:
    # Validates and serialises 2000 models a request: pure CPU on the event loop.
    return [Item.model_validate(item.model_dump()) for item in CATALOGUE]


def legacy_checksum(data: bytes) -> str:
    time.sleep(0.2)  # a vendor library's "rate limit": it blocks the calling thread
    return hashlib.sha256(data).hexdigest()


def receipt_for(order_id: int) -> str:
    return legacy_checksum(str(order_id).encode())


@app.get("/orders/{order_id}/receipt")
async def receipt(order_id: int):
    return {"order": order_id, "checksum": receipt_for(order_id)}


def current_user() -> str:
    return "demo"


@app.get("/me")
def me(user: str = Depends(current_user)):
    time.sleep(0.05)  # a slow, synchronous lookup: FastAPI runs this `def` in its thread pool
    return {"user": user}


def get_session():
    with Session(engine) as session:
        yield session


@app.get("/orders/{order_id}")
def order(order_id: int, session: Session = Depends(get_session)):
    # A slow report query: the pool's connection is held for as long as it runs.
    row = session.execute(text("SELECT CAST(:id AS int) AS id, pg_sleep(0.1)"), {"id": order_id}).one()
    return {"order": row.id}


@app.get("/stock/{item_id}")
async def stock(item_id: int):
    answer = await inventory.get(INVENTORY_URL, params={"item": item_id})
    return {"item": item_id, "inventory": answer.status_code}
