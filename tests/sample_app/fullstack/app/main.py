"""An API shaped like FastAPI's full-stack template's backend: users, a login that checks a
password hash and returns a bearer token, and items owned by users, all `def` routes on a
synchronous SQLAlchemy session. Run it as its users would: `uvicorn app.main:app`."""

from fastapi import APIRouter, FastAPI, HTTPException
from pydantic import BaseModel
from sqlalchemy import func, select

from .deps import CurrentUser, SessionDep
from .models import Item, User
from .security import create_access_token, verify_password


class Login(BaseModel):
    username: str
    password: str


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"


class UserPublic(BaseModel):
    id: int
    email: str
    full_name: str | None


class ItemCreate(BaseModel):
    title: str
    description: str | None = None


class ItemPublic(ItemCreate):
    id: int
    owner_id: int


class ItemsPublic(BaseModel):
    data: list[ItemPublic]
    count: int


login_router, users_router, items_router = APIRouter(), APIRouter(), APIRouter()


@login_router.post("/login/access-token")
def login_access_token(session: SessionDep, form: Login) -> Token:
    user = session.scalar(select(User).where(User.email == form.username))
    if user is None or not verify_password(form.password, user.hashed_password):
        raise HTTPException(status_code=400, detail="Incorrect email or password")
    return Token(access_token=create_access_token(user.id))


@users_router.get("/me")
def read_user_me(current_user: CurrentUser) -> UserPublic:
    return UserPublic(id=current_user.id, email=current_user.email, full_name=current_user.full_name)


@items_router.get("/")
def read_items(session: SessionDep, current_user: CurrentUser, skip: int = 0, limit: int = 100) -> ItemsPublic:
    mine = select(Item).where(Item.owner_id == current_user.id)
    count = session.scalar(select(func.count()).select_from(mine.subquery())) or 0
    items = session.scalars(mine.order_by(Item.id).offset(skip).limit(limit)).all()
    return ItemsPublic(data=[ItemPublic.model_validate(i, from_attributes=True) for i in items], count=count)


@items_router.post("/")
def create_item(session: SessionDep, current_user: CurrentUser, item_in: ItemCreate) -> ItemPublic:
    item = Item(title=item_in.title, description=item_in.description, owner_id=current_user.id)
    session.add(item)
    session.commit()
    session.refresh(item)
    return ItemPublic.model_validate(item, from_attributes=True)


api_router = APIRouter()
api_router.include_router(login_router, tags=["login"])
api_router.include_router(users_router, prefix="/users", tags=["users"])
api_router.include_router(items_router, prefix="/items", tags=["items"])

app = FastAPI(title="full-stack-shaped")
app.include_router(api_router, prefix="/api/v1")
