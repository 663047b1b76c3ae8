"""Users, project groups, personal access tokens and refresh tokens: creating them, and
checking the credentials a client presents."""

from __future__ import annotations

import asyncio
import re
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.exc import IntegrityError

from ociregistry.auth.generation import GenerationCache, current_generation
from ociregistry.auth.models import (
    GroupMember,
    PersonalAccessToken,
    ProjectGroup,
    RefreshToken,
    RevokedSession,
    User,
)
from ociregistry.auth.secrets import (
    MIN_PASSWORD_LENGTH,
    generate_password,
    hash_password,
    hash_secret,
    new_public_id,
    new_secret,
    secret_matches,
    verify_password,
)
from ociregistry.catalog.listings import (
    FIRST_PAGE,
    TRIGRAM,
    Key,
    Page,
    Total,
    keyset_fetch,
    keyset_order,
    name_contains,
    search_total,
    searched_first,
)
from ociregistry.db.database import Database
from ociregistry.db.models import as_utc, new_resource_id, utcnow
from ociregistry.db.sql import insert_ignore
from ociregistry.errors import AccountError, AccountExists, AccountUnknown

ROLES = ("owner", "developer", "guest")
PAT_PREFIX = "ocir_"
REFRESH_PREFIX = "ocirr_"
REFRESH_TOKEN_LIFETIME = timedelta(days=30)
RECENT_PASSWORDS = 1024
LAST_USED_PRECISION = timedelta(minutes=1)  # how often a token's last use is written
_USERNAME = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?")


# The user list's sort fields (`?sort=`), an allow-list like every list's.
USER_SORTS: dict[str, Any] = {
    "name": User.username,
    "username": User.username,
    "created_at": User.created_at,
}
# The personal access token list's sort fields.
TOKEN_SORTS: dict[str, Any] = {
    "name": PersonalAccessToken.name,
    "created_at": PersonalAccessToken.created_at,
    "last_used_at": PersonalAccessToken.last_used_at,
    "expires_at": PersonalAccessToken.expires_at,
}


@dataclass(frozen=True, slots=True)
class UserInfo:
    id: int
    username: str
    is_admin: bool
    disabled: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Authenticated:
    """A user whose credentials checked out; `token_id` when they used a personal access
    token, which may restrict them to pulling."""

    user: UserInfo
    token_id: int | None = None
    read_only: bool = False


@dataclass(frozen=True, slots=True)
class TokenInfo:
    public_id: str
    name: str
    read_only: bool
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    created_at: datetime


# Statements on the sign-in paths are built once: building one costs more than running it.
_USER_COLUMNS = (User.id, User.username, User.is_admin, User.disabled, User.created_at)
_USER = select(*_USER_COLUMNS).where(User.username == bindparam("username"))
_USER_WITH_PASSWORD = select(*_USER_COLUMNS, User.password_hash).where(
    User.username == bindparam("username")
)
_TOKEN_BY_PUBLIC_ID = select(
    PersonalAccessToken.id,
    PersonalAccessToken.user_id,
    PersonalAccessToken.secret_hash,
    PersonalAccessToken.read_only,
    PersonalAccessToken.expires_at,
    PersonalAccessToken.revoked_at,
    PersonalAccessToken.last_used_at,
).where(PersonalAccessToken.public_id == bindparam("public_id"))
_USER_OF_TOKEN = (
    select(*_USER_COLUMNS)
    .join(PersonalAccessToken, PersonalAccessToken.user_id == User.id)
    .where(PersonalAccessToken.public_id == bindparam("public_id"))
)
_TOKEN_STATE = select(
    PersonalAccessToken.read_only,
    PersonalAccessToken.expires_at,
    PersonalAccessToken.revoked_at,
).where(
    PersonalAccessToken.id == bindparam("token_id"),
    PersonalAccessToken.user_id == bindparam("user_id"),
)


_TOKEN_COLUMNS = (  # a TokenInfo's
    PersonalAccessToken.public_id,
    PersonalAccessToken.name,
    PersonalAccessToken.read_only,
    PersonalAccessToken.expires_at,
    PersonalAccessToken.revoked_at,
    PersonalAccessToken.last_used_at,
    PersonalAccessToken.created_at,
)
_REVOKED_SESSION = select(RevokedSession.jti).where(RevokedSession.jti == bindparam("jti"))


def _live(*, revoked_at: datetime | None, expires_at: datetime | None) -> bool:
    """A token that was neither revoked nor has expired."""
    expires_at = as_utc(expires_at)
    return revoked_at is None and (expires_at is None or expires_at > utcnow())


def _split_token(secret: str, prefix: str) -> tuple[str, str] | None:
    if not secret.startswith(prefix):
        return None
    public_id, _, value = secret[len(prefix) :].partition("_")
    if not public_id or not value:
        return None
    return public_id, value


class Accounts:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._recent: OrderedDict[str, None] = OrderedDict()  # recently matched passwords
        self._token_users: GenerationCache[tuple[UserInfo | None, tuple[Any, ...] | None]] = (
            GenerationCache()
        )

    # -- users -------------------------------------------------------------------------------

    @staticmethod
    def check_username(username: str) -> str:
        if _USERNAME.fullmatch(username) is None:
            raise AccountError(
                f"invalid username {username[:80]!r}: use 1-64 characters of a-z 0-9 . _ -, "
                "starting and ending with a letter or digit",
                detail={"field": "username"},
            )
        return username

    @staticmethod
    def check_password(password: str) -> str:
        if len(password) < MIN_PASSWORD_LENGTH:
            raise AccountError(
                f"the password must have at least {MIN_PASSWORD_LENGTH} characters",
                detail={"field": "password"},
            )
        return password

    async def create_user(
        self, username: str, password: str, *, is_admin: bool = False
    ) -> UserInfo:
        """A new user and their own project group (named after them, they its owner)."""
        self.check_username(username)
        self.check_password(password)
        password_hash = hash_password(password)
        try:
            async with self.db.write() as conn:
                if await conn.scalar(select(User.id).where(User.username == username)):
                    raise AccountExists(f"user {username!r} exists", detail={"username": username})
                result = await conn.execute(
                    User.__table__.insert().values(
                        username=username,
                        password_hash=password_hash,
                        is_admin=is_admin,
                        disabled=False,
                        created_at=utcnow(),
                        updated_at=utcnow(),
                    )
                )
                user_id = result.inserted_primary_key[0]
                group_name = username
                suffix = 1
                while await conn.scalar(
                    select(ProjectGroup.id).where(ProjectGroup.name == group_name)
                ):
                    suffix += 1
                    group_name = f"{username}-{suffix}"
                group = await conn.execute(
                    ProjectGroup.__table__.insert().values(
                        resource_id=new_resource_id("grp"),
                        name=group_name,
                        description=f"{username}'s own group",
                        created_at=utcnow(),
                    )
                )
                await conn.execute(
                    GroupMember.__table__.insert().values(
                        group_id=group.inserted_primary_key[0],
                        user_id=user_id,
                        username=username,
                        role="owner",
                        created_at=utcnow(),
                    )
                )
        except IntegrityError:
            # Another instance created the same user between our check and our insert
            # (PostgreSQL runs writers side by side; SQLite's BEGIN IMMEDIATE cannot race).
            if await self.get_user(username) is None:
                raise
            raise AccountExists(
                f"user {username!r} exists", detail={"username": username}
            ) from None
        user = await self.get_user(username)
        assert user is not None
        return user

    async def ensure_admin(self, password: str | None) -> str | None:
        """On first start, create the `admin` account; return its password when generated."""
        async with self.db.read() as conn:
            if await conn.scalar(select(User.id).where(User.is_admin.is_(True)).limit(1)):
                return None
        generated = None
        if not password:
            password = generated = generate_password()
        try:
            await self.create_user("admin", password, is_admin=True)
        except AccountExists:
            return None
        return generated

    async def get_user(self, username: str) -> UserInfo | None:
        async with self.db.read() as conn:
            row = (await conn.execute(_USER, {"username": username})).first()
        return None if row is None else UserInfo(*row)

    async def list_users(
        self,
        *,
        q: str | None = None,
        order: list[Any] | None = None,
        offset: int = 0,
        limit: int | None = None,
    ) -> tuple[list[UserInfo], int]:
        """One page of users whose name contains `q` (literally), and how many there are."""
        query = select(*_USER_COLUMNS)
        if q:
            query = query.where(User.username.contains(q, autoescape=True))
        async with self.db.read(offload=True) as conn:
            total = await conn.scalar(select(func.count()).select_from(query.subquery()))
            page = query.order_by(*(order or [User.username.asc()]), User.id)
            rows = (await conn.execute(page.offset(offset).limit(limit))).all()
        return [UserInfo(*row) for row in rows], total or 0

    async def user_page(
        self, *, q: str | None = None, sort: str | None = None, page: Page = FIRST_PAGE
    ) -> tuple[list[UserInfo], Total, Key | None]:
        """One page of users whose name contains `q` (literally), in the order of `sort`
        (an index range: after the page's key, see catalog/listings.py); their number
        counted up to SEARCH_COUNT_LIMIT; the key of the last row when more follow."""
        url = self.db.url
        chosen = select(User.id)
        if q:
            chosen = chosen.where(name_contains(url, User.id, User.username, "users_search", q))
            chosen = searched_first(url, chosen, User.id)
        order = keyset_order(sort, USER_SORTS, "username", User.id)
        query = select(*_USER_COLUMNS)
        if q:
            query = query.where(User.id.in_(chosen))
        async with self.db.read(offload=True) as conn:
            total, matches = await search_total(conn, url, chosen, User.id, q)
            if matches is not None:  # the search's matches, all of them: sort only those
                query = select(*_USER_COLUMNS).where(matches)
            rows, following = await keyset_fetch(conn, query, order, page)
        return [UserInfo(*row) for row in rows], total, following

    async def _update_user(self, username: str, **values: object) -> None:
        async with self.db.write() as conn:
            result = await conn.execute(
                update(User).where(User.username == username).values(updated_at=utcnow(), **values)
            )
        if not result.rowcount:
            raise AccountUnknown(f"user {username!r} does not exist")

    async def set_password(self, username: str, password: str) -> None:
        await self._update_user(
            username, password_hash=hash_password(self.check_password(password))
        )

    async def set_disabled(self, username: str, disabled: bool) -> None:
        await self._update_user(username, disabled=disabled)

    # -- credentials -------------------------------------------------------------------------

    async def authenticate(self, username: str, secret: str) -> Authenticated | None:
        """Check a password or a personal access token. Unknown users, wrong secrets and
        disabled accounts all answer None, after the same amount of work."""
        async with self.db.read() as conn:
            row = (await conn.execute(_USER_WITH_PASSWORD, {"username": username})).first()
        user = UserInfo(*row[:5]) if row else None
        token = _split_token(secret, PAT_PREFIX)
        if token is not None:
            found = await self._check_token(user, *token)
            if found is None:
                await self._verify(None, secret)  # same cost as a password check
            return found
        matched = await self._verify(row[5] if row else None, secret)
        if not matched or user is None or user.disabled:
            return None
        return Authenticated(user)

    async def _verify(self, password_hash: str | None, password: str) -> bool:
        """argon2 on a worker thread (it takes tens of milliseconds by design); a password
        that matched recently matches again from memory, so clients that send Basic
        credentials with every request do not pay for it each time. Failures are never
        cached: each costs the full price."""
        key = hash_secret(f"{password_hash}\0{password}") if password_hash else None
        if key is not None and key in self._recent:
            self._recent.move_to_end(key)
            return True
        matched = await asyncio.to_thread(verify_password, password_hash, password)
        if matched and key is not None:
            self._recent[key] = None
            while len(self._recent) > RECENT_PASSWORDS:
                self._recent.popitem(last=False)
        return matched

    async def authenticate_token(self, secret: str) -> Authenticated | None:
        """A personal access token on its own (`Authorization: Bearer ocir_…`): the token
        names its user."""
        parts = _split_token(secret, PAT_PREFIX)
        if parts is None:
            return None
        async with self.db.read() as conn:
            row = (await conn.execute(_USER_OF_TOKEN, {"public_id": parts[0]})).first()
        return await self._check_token(UserInfo(*row) if row else None, *parts)

    async def _check_token(
        self, user: UserInfo | None, public_id: str, secret: str
    ) -> Authenticated | None:
        async with self.db.read() as conn:
            row = (await conn.execute(_TOKEN_BY_PUBLIC_ID, {"public_id": public_id})).first()
        matched = secret_matches(row[2] if row else None, secret)
        if not matched or row is None or user is None or row[1] != user.id or user.disabled:
            return None
        if not _live(revoked_at=row[5], expires_at=row[4]):
            return None
        last_used = as_utc(row[6])
        if last_used is None or last_used < utcnow() - LAST_USED_PRECISION:
            async with self.db.write() as conn:
                await conn.execute(
                    update(PersonalAccessToken)
                    .where(PersonalAccessToken.id == row[0])
                    .values(last_used_at=utcnow())
                )
        return Authenticated(user, token_id=row[0], read_only=bool(row[3]))

    async def active_user(
        self, username: str, token_id: int | None, generation: int | None = None
    ) -> Authenticated | None:
        """The user behind a registry token, if they (and the personal access token the
        registry token came from) are still valid: disabling and revoking act at once.

        The rows are cached under the access generation (auth/generation.py), read here
        unless the caller read it already for this request."""
        if generation is None:
            generation = await current_generation(self.db)
        key = (username, token_id)
        hit, state = self._token_users.get(key, generation)
        if not hit:
            state = await self._token_user(username, token_id)
            self._token_users.put(key, generation, state)
        user, token = state if state is not None else (None, None)
        if user is None or user.disabled:
            return None
        if token_id is None:
            return Authenticated(user)
        if token is None or not _live(revoked_at=token[2], expires_at=token[1]):
            return None
        return Authenticated(user, token_id=token_id, read_only=bool(token[0]))

    async def _token_user(
        self, username: str, token_id: int | None
    ) -> tuple[UserInfo | None, tuple[Any, ...] | None]:
        """The user's row, and the state of the personal access token if one is named."""
        user = await self.get_user(username)
        if user is None or token_id is None:
            return user, None
        async with self.db.read() as conn:
            row = (
                await conn.execute(_TOKEN_STATE, {"token_id": token_id, "user_id": user.id})
            ).first()
        return user, None if row is None else tuple(row)

    # -- console sessions --------------------------------------------------------------------

    async def revoke_session(self, jti: str, expires_at: datetime) -> None:
        """Sign a console session out for good (its cookie might have been copied)."""
        async with self.db.write() as conn:
            await conn.execute(delete(RevokedSession).where(RevokedSession.expires_at < utcnow()))
            await insert_ignore(
                conn, RevokedSession.__table__, {"jti": jti, "expires_at": expires_at}, ["jti"]
            )

    async def session_revoked(self, jti: str) -> bool:
        async with self.db.read() as conn:
            return await conn.scalar(_REVOKED_SESSION, {"jti": jti}) is not None

    # -- personal access tokens --------------------------------------------------------------

    async def create_token(
        self,
        username: str,
        name: str,
        *,
        read_only: bool = False,
        expires_at: datetime | None = None,
    ) -> tuple[TokenInfo, str]:
        """A new token and its secret, which is shown this once and never stored."""
        if not 1 <= len(name) <= 64:
            raise AccountError("a token name has 1-64 characters", detail={"field": "name"})
        user = await self.get_user(username)
        if user is None:
            raise AccountUnknown(f"user {username!r} does not exist")
        public_id, secret = new_public_id(), new_secret()
        async with self.db.write() as conn:
            exists = await conn.scalar(
                select(PersonalAccessToken.id).where(
                    PersonalAccessToken.user_id == user.id, PersonalAccessToken.name == name
                )
            )
            if exists:
                raise AccountExists(f"a token named {name!r} exists", detail={"name": name})
            await conn.execute(
                PersonalAccessToken.__table__.insert().values(
                    public_id=public_id,
                    user_id=user.id,
                    name=name,
                    secret_hash=hash_secret(secret),
                    read_only=read_only,
                    expires_at=expires_at,
                    created_at=utcnow(),
                )
            )
        info = TokenInfo(public_id, name, read_only, expires_at, None, None, utcnow())
        return info, f"{PAT_PREFIX}{public_id}_{secret}"

    async def list_tokens(
        self,
        username: str,
        *,
        q: str | None = None,
        order: list[Any] | None = None,
        offset: int = 0,
        limit: int | None = None,
    ) -> tuple[list[TokenInfo], int]:
        """One page of a user's tokens whose name contains `q`, and how many there are
        (oldest first unless `order` says otherwise)."""
        query = (
            select(*_TOKEN_COLUMNS)
            .join(User, User.id == PersonalAccessToken.user_id)
            .where(User.username == username)
        )
        if q:
            query = query.where(PersonalAccessToken.name.contains(q, autoescape=True))
        async with self.db.read() as conn:
            total = await conn.scalar(select(func.count()).select_from(query.subquery()))
            page = query.order_by(
                *(order or [PersonalAccessToken.created_at.asc()]), PersonalAccessToken.id
            )
            rows = (await conn.execute(page.offset(offset).limit(limit))).all()
        return [TokenInfo(*row) for row in rows], total or 0

    async def token_page(
        self,
        username: str,
        *,
        q: str | None = None,
        sort: str | None = None,
        page: Page = FIRST_PAGE,
    ) -> tuple[list[TokenInfo], Total, Key | None]:
        """One page of a user's tokens whose name contains `q`, in the order of `sort`
        (oldest first by default): a range of an index of (user, sort column, id); their
        number counted up to SEARCH_COUNT_LIMIT; the key of the last row when more follow."""
        url = self.db.url
        user_id = select(User.id).where(User.username == username).scalar_subquery()
        chosen = select(PersonalAccessToken.id).where(PersonalAccessToken.user_id == user_id)
        if q:
            named = name_contains(
                url, PersonalAccessToken.id, PersonalAccessToken.name, "tokens_search", q
            )
            mine = PersonalAccessToken.user_id == user_id
            if len(q) >= TRIGRAM:  # `+ 0`: from the trigram index, not a walk of the tokens
                mine = PersonalAccessToken.user_id + 0 == user_id
            chosen = select(PersonalAccessToken.id).where(mine, named)
            chosen = searched_first(url, chosen, PersonalAccessToken.id)
        order = keyset_order(sort, TOKEN_SORTS, "created_at", PersonalAccessToken.id)
        query = select(*_TOKEN_COLUMNS)
        if q:
            query = query.where(PersonalAccessToken.id.in_(chosen))
        else:
            query = query.where(PersonalAccessToken.user_id == user_id)
        async with self.db.read(offload=True) as conn:
            total, matches = await search_total(conn, url, chosen, PersonalAccessToken.id, q)
            if matches is not None:  # the search's matches, all of them: sort only those
                query = select(*_TOKEN_COLUMNS).where(matches)
            rows, following = await keyset_fetch(conn, query, order, page)
        return [TokenInfo(*row) for row in rows], total, following

    async def revoke_token(self, username: str, public_id: str) -> None:
        async with self.db.write() as conn:
            user_id = await conn.scalar(select(User.id).where(User.username == username))
            result = await conn.execute(
                update(PersonalAccessToken)
                .where(
                    PersonalAccessToken.public_id == public_id,
                    PersonalAccessToken.user_id == user_id,
                    PersonalAccessToken.revoked_at.is_(None),
                )
                .values(revoked_at=utcnow())
            )
        if not result.rowcount:
            raise AccountUnknown(f"no active token {public_id!r} of user {username!r}")

    # -- refresh tokens (docker login's identity token) --------------------------------------

    async def issue_refresh_token(self, who: Authenticated) -> str:
        public_id, secret = new_public_id(), new_secret()
        async with self.db.write() as conn:
            await conn.execute(
                RefreshToken.__table__.insert().values(
                    public_id=public_id,
                    user_id=who.user.id,
                    secret_hash=hash_secret(secret),
                    token_id=who.token_id,
                    expires_at=utcnow() + REFRESH_TOKEN_LIFETIME,
                    created_at=utcnow(),
                )
            )
        return f"{REFRESH_PREFIX}{public_id}_{secret}"

    async def redeem_refresh_token(self, value: str) -> Authenticated | None:
        parts = _split_token(value, REFRESH_PREFIX)
        if parts is None:
            return None
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(
                        RefreshToken.secret_hash,
                        RefreshToken.expires_at,
                        RefreshToken.revoked_at,
                        RefreshToken.token_id,
                        User.username,
                    )
                    .join(User, User.id == RefreshToken.user_id)
                    .where(RefreshToken.public_id == parts[0])
                )
            ).first()
        if not secret_matches(row[0] if row else None, parts[1]) or row is None:
            return None
        if not _live(revoked_at=row[2], expires_at=row[1]):
            return None
        return await self.active_user(row[4], row[3])
