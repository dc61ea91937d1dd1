"""Organization (workspace), members and API keys."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from fastapi import APIRouter, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from crm.api.dependencies import ActorDep
from crm.api.schemas import Id, ListOut, StrictModel, TelegramId
from crm.models import ApiKey, Membership, Role
from crm.services.accounts import api_keys as apikeys
from crm.services.accounts import workspaces as tenants

router = APIRouter(tags=["organization"])


class OrganizationOut(BaseModel):
    id: int
    name: str
    default_region: str
    default_currency: str
    created_at: dt.datetime


class OrganizationPatch(StrictModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    default_region: str | None = Field(default=None, pattern=r"^[A-Za-z]{2}$")
    default_currency: str | None = Field(default=None, pattern=r"^[A-Za-z]{3}$")


class MemberOut(BaseModel):
    user_id: int
    name: str
    telegram_id: int | None
    email: str | None
    role: Role
    joined_at: dt.datetime


class MemberIn(StrictModel):
    role: Role
    telegram_id: TelegramId | None = None
    email: str | None = Field(default=None, max_length=254)
    name: str = Field(default="", max_length=200)


class MemberInvitedOut(BaseModel):
    """Someone with an account already: asked to join; they accept in the operator bot."""

    invite_id: int
    status: Literal["pending"] = "pending"
    role: Role
    telegram_id: int | None = Field(description="as sent")
    email: str | None = Field(description="as sent")
    expires_at: dt.datetime


class MemberPatch(StrictModel):
    role: Role


class ApiKeyOut(BaseModel):
    id: int
    name: str
    prefix: str
    user_id: int
    scopes: list[str]
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="shown once: store it now, it cannot be read again")


class ApiKeyIn(StrictModel):
    name: str = Field(default="", max_length=100)
    scopes: list[str] | None = None
    user_id: Id | None = None


def _member_out(m: Membership) -> MemberOut:
    return MemberOut(
        user_id=m.user.id,
        name=m.user.name,
        telegram_id=m.user.telegram_id,
        email=m.user.email,
        role=m.role,
        joined_at=m.created_at,
    )


def _key_out(k: ApiKey) -> ApiKeyOut:
    return ApiKeyOut(
        id=k.id,
        name=k.name,
        prefix=k.prefix,
        user_id=k.user_id,
        scopes=k.scopes,
        created_at=k.created_at,
        last_used_at=k.last_used_at,
        revoked_at=k.revoked_at,
    )


@router.get("/organization", response_model=OrganizationOut)
async def get_organization(actor: ActorDep) -> OrganizationOut:
    """The workspace the API key belongs to."""
    t = await tenants.access_tenant(actor)
    return OrganizationOut.model_validate(t, from_attributes=True)


@router.patch("/organization", response_model=OrganizationOut)
async def patch_organization(body: OrganizationPatch, actor: ActorDep) -> OrganizationOut:
    """Rename the workspace or change its defaults (admin)."""
    t = await tenants.do_update_tenant(actor, **body.model_dump(exclude_unset=True))
    return OrganizationOut.model_validate(t, from_attributes=True)


@router.get("/members", response_model=ListOut[MemberOut])
async def get_members(actor: ActorDep) -> ListOut[MemberOut]:
    """Every member with their role."""
    members = await tenants.list_members(actor)
    return ListOut(items=[_member_out(m) for m in members])


@router.post(
    "/members",
    response_model=MemberOut,
    status_code=status.HTTP_201_CREATED,
    responses={
        202: {
            "model": MemberInvitedOut,
            "description": "the person has an account already: invited, joins once they accept "
            "in the operator bot",
        }
    },
)
async def post_member(body: MemberIn, actor: ActorDep) -> MemberOut | JSONResponse:
    """Add a member by Telegram id or email (admin); someone with an account is invited."""
    added = await tenants.do_add_member(
        actor, body.role, telegram_id=body.telegram_id, email=body.email, name=body.name
    )
    if isinstance(added, tenants.PendingMember):
        invited = MemberInvitedOut(
            invite_id=added.invite.id,
            role=added.invite.role,
            telegram_id=body.telegram_id,
            email=body.email,
            expires_at=added.invite.expires_at,
        )
        return JSONResponse(invited.model_dump(mode="json"), status_code=status.HTTP_202_ACCEPTED)
    return _member_out(added)


@router.get("/members/{user_id}", response_model=MemberOut)
async def get_member(user_id: Id, actor: ActorDep) -> MemberOut:
    """One member."""
    return _member_out(await tenants.access_membership(actor, user_id))


@router.patch("/members/{user_id}", response_model=MemberOut)
async def patch_member(user_id: Id, body: MemberPatch, actor: ActorDep) -> MemberOut:
    """Change a member's role (admin; the owner role only by an owner)."""
    return _member_out(await tenants.do_change_member_role(actor, user_id, body.role))


@router.delete("/members/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_member(user_id: Id, actor: ActorDep) -> None:
    """Remove a member (admin; never the last owner)."""
    await tenants.do_remove_member(actor, user_id)


@router.get("/api-keys", response_model=ListOut[ApiKeyOut])
async def get_api_keys(actor: ActorDep) -> ListOut[ApiKeyOut]:
    """API keys (all for an admin, one's own otherwise); secrets are never shown again."""
    keys = await apikeys.list_api_keys(actor)
    return ListOut(items=[_key_out(k) for k in keys])


@router.post("/api-keys", response_model=ApiKeyCreated, status_code=status.HTTP_201_CREATED)
async def post_api_key(body: ApiKeyIn, actor: ActorDep) -> ApiKeyCreated:
    """Issue an API key; the response carries the secret, once."""
    issued = await apikeys.do_create_api_key(
        actor, body.name, body.scopes, for_user_id=body.user_id
    )
    return ApiKeyCreated(**_key_out(issued.api_key).model_dump(), key=issued.token)


@router.delete("/api-keys/{api_key_id}", response_model=ApiKeyOut)
async def delete_api_key(api_key_id: Id, actor: ActorDep) -> ApiKeyOut:
    """Revoke an API key."""
    return _key_out(await apikeys.do_revoke_api_key(actor, api_key_id))
