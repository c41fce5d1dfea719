"""A small shop API, written as an app is, not for this benchmark: what `--app` diagnoses in the tests.

Run it as its users would: `uvicorn shop:app` from this directory.
"""

import hashlib
import time

from fastapi import Depends, FastAPI
from pydantic import BaseModel

app = FastAPI(title="shop")


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
