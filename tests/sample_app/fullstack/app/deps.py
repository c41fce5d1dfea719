from typing import Annotated

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from .db import get_db
from .models import User
from .security import subject_of

SessionDep = Annotated[Session, Depends(get_db)]
bearer = HTTPBearer()


def get_current_user(session: SessionDep, credentials: HTTPAuthorizationCredentials = Depends(bearer)) -> User:
    user_id = subject_of(credentials.credentials)
    user = session.get(User, user_id) if user_id is not None else None
    if user is None or not user.is_active:
        raise HTTPException(status_code=status.HTTP_401_UNAUTHORIZED, detail="Could not validate credentials")
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]
